"""Contract of the `spaces` blueprint (api/catalogue.py): the space catalogue."""

from __future__ import annotations

from marshmallow import Schema, fields


class SpaceSchema(Schema):
    code = fields.String()
    label = fields.String()
    public_only = fields.Boolean()
    opened_by_default = fields.Boolean()
    granted_by_default = fields.Dict(keys=fields.String(), values=fields.String())

    example = {
        "code": "issued_invoices",
        "label": "Issued invoices",
        "public_only": False,
        "opened_by_default": True,
        "granted_by_default": {"principal": "modify", "secondary": "modify", "simple": "consult"},
    }
