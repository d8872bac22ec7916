"""Contracts of the `decision_log` blueprint (api/decision_log.py)."""

from __future__ import annotations

import datetime as dt

from marshmallow import Schema, fields

from models import DECISION_APIS

from . import fields as f
from .common import PageArgs


class DecisionLogQuerySchema(PageArgs):
    user_id = f.record_id(description="The subject asked about.")
    structure_id = f.record_id()
    service = f.text(1, 60, description="Service code (questions about one service).")
    space = f.text(1, 60, description="Space code; management actions have none.")
    action = f.text(1, 60)
    result = f.one_of(("allowed", "denied"))
    client_id = f.record_id(description="The client application that asked.")
    api = f.one_of(DECISION_APIS)
    since = fields.AwareDateTime(
        default_timezone=dt.UTC, metadata={"description": "From (inclusive)."}
    )
    until = fields.AwareDateTime(
        default_timezone=dt.UTC, metadata={"description": "To (exclusive)."}
    )
    format = f.one_of(
        ("json", "csv"),
        load_default="json",
        description="json: one page; csv: every matching record (pages ignored).",
    )


class DecisionRecordSchema(Schema):
    id = fields.Integer()
    decided_at = fields.DateTime()
    api = fields.String()
    client_id = fields.Integer(allow_none=True)
    caller_user_id = fields.Integer(allow_none=True)
    user_id = fields.Integer(allow_none=True)
    structure_id = fields.Integer(allow_none=True)
    service = fields.String(allow_none=True)
    space = fields.String(allow_none=True)
    action = fields.String()
    allowed = fields.Boolean()
    rule = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    revision = fields.Integer()
    policy_version = fields.Integer(allow_none=True)
    request_id = fields.String(allow_none=True)

    example = {
        "id": 88012,
        "decided_at": "2026-11-23T09:12:44.120000+00:00",
        "api": "check",
        "client_id": 3,
        "caller_user_id": None,
        "user_id": 43,
        "structure_id": 12,
        "service": None,
        "space": "issued_invoices",
        "action": "modify",
        "allowed": True,
        "rule": "subscription:812 modify issued_invoices (all services)",
        "reason": None,
        "revision": 4471,
        "policy_version": 2,
        "request_id": "5f0c1d7e-2b1f-4d8e-9c51-0a4f3c7b9e12",
    }
