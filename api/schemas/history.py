"""Contracts of the `history` blueprint (api/history.py)."""

from __future__ import annotations

import datetime as dt

from marshmallow import Schema, fields

from . import fields as f
from .common import PageArgs


class HistoryQuerySchema(PageArgs):
    since = fields.AwareDateTime(default_timezone=dt.timezone.utc)
    until = fields.AwareDateTime(default_timezone=dt.timezone.utc)
    action = f.text(
        1,
        60,
        description="Exact action, or a prefix ending with '.' (e.g. attachment_request.).",
    )
    user_id = fields.Integer(metadata={"description": "As actor or as target."})


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


class HistoryDetailSchema(HistoryEntrySchema):
    before = fields.Dict(allow_none=True)
    after = fields.Dict(allow_none=True)
