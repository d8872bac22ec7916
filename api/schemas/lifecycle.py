"""Contracts of the `lifecycle` blueprint (api/lifecycle.py): the principal
role handed over, one's account deactivated and reactivated, the change of
identifier."""

from __future__ import annotations

from marshmallow import Schema, fields

from authz.workflows.lifecycle import reactivable_until
from models import IDENTIFIER_TYPES

from . import fields as f
from .accounts import LoginSchema, UserSchema


class SuccessorSchema(Schema):
    user_id = f.record_id()
    login_email = f.text(3, f.EMAIL_MAX)


class DesignationSchema(SuccessorSchema):
    comment = f.comment()

    example = {
        "login_email": "paul.durand@example.org",
        "comment": "Paul takes over as I retire.",
    }


class StructureSuccessorSchema(SuccessorSchema):
    structure_id = f.record_id(required=True)


class DeactivationSchema(Schema):
    password = f.password(required=True, description="Your current password, to confirm.")
    successors = fields.List(
        fields.Nested(StructureSuccessorSchema),
        load_default=list,
        metadata={"description": "A new principal for every structure you lead."},
    )

    example = {
        "password": "correct horse battery staple",
        "successors": [{"structure_id": 12, "login_email": "paul.durand@example.org"}],
    }


class ReactivationSchema(LoginSchema):
    pass


class IdentifierChangeSchema(Schema):
    identifier_type = f.one_of(IDENTIFIER_TYPES, required=True)
    identifier_value = f.identifier_value(required=True)
    designation = f.designation(description="Default: the current one.")
    confirm = fields.Boolean(
        required=True, metadata={"description": "Must be true: the structure becomes inactive."}
    )

    example = {
        "identifier_type": "SIRET",
        "identifier_value": "73282932000082",
        "designation": "Boulangerie Martin",
        "confirm": True,
    }


class DeactivatedAccountSchema(UserSchema):
    """The account just deactivated, with the deadline to reactivate it."""

    reactivable_until = fields.Function(
        lambda user: (until := reactivable_until(user)) and until.isoformat(),
        metadata={
            "type": "string",
            "format": "date-time",
            "description": "Until when POST /v1/me/reactivation works; then the account is closed.",
        },
    )

    example = {
        **UserSchema.example,
        "status": "inactive",
        "reactivable_until": "2027-01-29T10:12:00",
    }
