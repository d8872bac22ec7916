"""Contracts of the `history` blueprint (api/history.py)."""

from __future__ import annotations

import datetime as dt

from marshmallow import Schema, fields

from . import fields as f
from .common import PageArgs


class HistoryQuerySchema(PageArgs):
    since = fields.AwareDateTime(default_timezone=dt.UTC)
    until = fields.AwareDateTime(default_timezone=dt.UTC)
    action = f.text(
        1,
        60,
        description="Exact action, or a prefix ending with '.' (e.g. attachment_request.).",
    )
    user_id = f.record_id(description="As actor or as target.")


class HistoryEntrySchema(Schema):
    id = fields.Integer()
    structure_id = fields.Integer(allow_none=True)
    actor_id = fields.Integer(allow_none=True)
    action = fields.String()
    target_user_id = fields.Integer(allow_none=True)
    request_kind = fields.String(allow_none=True)
    request_id = fields.Integer(allow_none=True)
    comment = fields.String(allow_none=True)
    created_at = fields.DateTime()

    example = {
        "id": 905,
        "structure_id": 12,
        "actor_id": 42,
        "action": "attachment_request.validated",
        "target_user_id": 43,
        "request_kind": "attachment",
        "request_id": 31,
        "comment": "Welcome to the accounting team.",
        "created_at": "2026-02-01T08:45:00+00:00",
    }


class HistoryDetailSchema(HistoryEntrySchema):
    before = fields.Dict(allow_none=True)
    after = fields.Dict(allow_none=True)

    example = {
        **HistoryEntrySchema.example,
        "before": {"status": "pending"},
        "after": {"status": "validated", "role": "simple"},
    }
