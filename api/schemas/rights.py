"""What a user may do, as GET /v1/users/{id}/permissions (users blueprint) and
GET /v1/structures/{id}/access (structures blueprint) both answer it."""

from __future__ import annotations

from marshmallow import Schema, fields


class GrantSchema(Schema):
    service = fields.String(
        allow_none=True, metadata={"description": "Service code; null: the whole structure."}
    )
    space = fields.String()
    actions = fields.List(fields.String())

    example = {
        "service": None,
        "space": "issued_invoices",
        "actions": ["consult", "modify", "create"],
    }


class RightsFields(Schema):
    role = fields.String(
        allow_none=True, metadata={"description": "Role in force today; null: none."}
    )
    management = fields.List(
        fields.String(), metadata={"description": "Management actions allowed."}
    )
    grants = fields.List(fields.Nested(GrantSchema))


class UserRightsSchema(RightsFields):
    structure_id = fields.Integer()

    example = {
        "structure_id": 12,
        "role": "principal",
        "management": ["structure.view", "users.manage"],
        "grants": [GrantSchema.example],
    }


class MemberRightsSchema(RightsFields):
    user_id = fields.Integer()

    example = {
        "user_id": 42,
        **{k: v for k, v in UserRightsSchema.example.items() if k != "structure_id"},
    }
