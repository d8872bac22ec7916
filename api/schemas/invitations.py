"""Contracts of the `invitations` blueprint (api/invitations.py): the
invitations a manager's direct attachment becomes when the person must consent
(docs/decisions.md, "Consent"), answered by that person, and leaving a
structure. Also the 202 answer of a direct attachment (api/structures.py)."""

from __future__ import annotations

from marshmallow import Schema, fields

from authz.workflows.invitations import effective_status
from models import INVITATION_STATUSES

from . import fields as f
from .common import PageArgs


class InvitationSchema(Schema):
    id = fields.Integer()
    structure_id = fields.Integer()
    user_id = fields.Integer()
    role = fields.String(metadata={"description": "secondary or simple"})
    whole_structure = fields.Boolean()
    service_ids = fields.Function(
        lambda inv: [s.service_id for s in inv.services],
        metadata={"description": "The services offered, when not the whole structure."},
    )
    valid_from = fields.Date()
    valid_until = fields.Date(allow_none=True)
    comment = fields.String(allow_none=True)
    status = fields.Function(
        effective_status,
        metadata={
            "description": "pending (grants nothing yet), accepted, refused, withdrawn, expired"
        },
    )
    created_at = fields.DateTime()
    expires_at = fields.DateTime()
    created_by_id = fields.Integer()
    decided_at = fields.DateTime(allow_none=True)

    example = {
        "id": 5,
        "structure_id": 12,
        "user_id": 43,
        "role": "simple",
        "whole_structure": False,
        "service_ids": [7],
        "valid_from": "2026-02-01",
        "valid_until": None,
        "comment": "Joins the accounting team.",
        "status": "pending",
        "created_at": "2026-01-20T10:00:00+00:00",
        "expires_at": "2026-02-19T10:00:00+00:00",
        "created_by_id": 42,
        "decided_at": None,
    }


class InvitationQueryArgs(PageArgs):
    status = f.one_of(
        INVITATION_STATUSES, description="Only the invitations in this (effective) status."
    )
