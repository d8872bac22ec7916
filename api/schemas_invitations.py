"""Schemas of invitations and of leaving a structure (issue 10, point 1).

Kept apart from api/schemas.py while that module is split into a package; to
be folded into it."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from authz.workflows.invitations import effective_status
from models import INVITATION_STATUSES

from .schemas import PageArgs


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


class InvitationQueryArgs(PageArgs):
    status = fields.String(validate=validate.OneOf(INVITATION_STATUSES))
