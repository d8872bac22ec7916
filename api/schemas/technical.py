"""Contracts of the `technical` blueprint (api/technical.py): technical users of
a structure and the token a technical user gets with its login and secret."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from authz.workflows.technical import LABEL_MAX

from . import fields as f


class TechnicalUserCreateSchema(Schema):
    label = f.text(
        1,
        LABEL_MAX,
        required=True,
        description="What the system is (e.g. 'Cash register software').",
    )


class FormatArgs(Schema):
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(("json", "file")),
        metadata={
            "description": "file: answer the connection-information "
            "file itself, as a text/plain download."
        },
    )


class SecretResetSchema(Schema):
    confirm = fields.Boolean(
        load_default=False,
        metadata={"description": "Must be true: the old secret stops working at once."},
    )


class ConnectionSchema(Schema):
    user_id = fields.Integer()
    login = fields.String()
    label = fields.String()
    secret = fields.String(metadata={"description": "Shown only in this answer."})
    secret_expires_at = fields.DateTime()
    connection_file = fields.String(
        metadata={"description": "The connection-information file (.env style)."}
    )


class TechnicalUserSchema(Schema):
    user_id = fields.Integer()
    login = fields.String()
    label = fields.String()
    status = fields.String()
    secret_expires_at = fields.DateTime()
    secret_expired = fields.Boolean()
    created_at = fields.DateTime()
    created_by_id = fields.Integer()
    rotated_at = fields.DateTime(allow_none=True)


class TechnicalTokenRequestSchema(Schema):
    login = f.login_email(required=True)
    secret = f.password(required=True)
