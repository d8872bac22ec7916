"""Contracts of the `reviews` blueprint (api/reviews.py): the security team's
report and exports."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class ReportArgs(Schema):
    structure_id = fields.Integer(metadata={"description": "One structure only."})
    since = fields.Date(
        metadata={"description": "List every change of rights since this day (YYYY-MM-DD)."}
    )
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "html")))


class RightsArgs(Schema):
    structure_id = fields.Integer(metadata={"description": "One structure only."})
    format = fields.String(load_default="csv", validate=validate.OneOf(("csv", "json")))
