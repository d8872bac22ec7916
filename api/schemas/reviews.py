"""Contracts of the `reviews` blueprint (api/reviews.py): the security team's
report and exports."""

from __future__ import annotations

from marshmallow import Schema, fields

from . import fields as f


class ReportArgs(Schema):
    structure_id = f.record_id(description="One structure only.")
    since = fields.Date(
        metadata={"description": "List every change of rights since this day (YYYY-MM-DD)."}
    )
    format = f.one_of(("json", "html"), load_default="json")


class RightsArgs(Schema):
    structure_id = f.record_id(description="One structure only.")
    format = f.one_of(("csv", "json"), load_default="csv")
