"""Contracts of the `technical` blueprint (api/technical.py): technical users of
a structure and the token a technical user gets with its login and secret."""

from __future__ import annotations

from marshmallow import Schema, fields

from authz.workflows.technical import LABEL_MAX

from . import fields as f


class TechnicalUserCreateSchema(Schema):
    label = f.text(
        1,
        LABEL_MAX,
        required=True,
        description="What the system is (e.g. 'Cash register software').",
    )

    example = {"label": "Cash register software"}


class FormatArgs(Schema):
    format = f.one_of(
        ("json", "file"),
        load_default="json",
        description="file: answer the connection-information file itself, "
        "as a text/plain download.",
    )


class SecretResetSchema(Schema):
    confirm = fields.Boolean(
        load_default=False,
        metadata={"description": "Must be true: the old secret stops working at once."},
    )

    example = {"confirm": True}


class ConnectionSchema(Schema):
    user_id = fields.Integer()
    login = fields.String()
    label = fields.String()
    secret = fields.String(metadata={"description": "Shown only in this answer."})
    secret_expires_at = fields.DateTime()
    connection_file = fields.String(
        metadata={"description": "The connection-information file (.env style)."}
    )

    example = {
        "user_id": 61,
        "login": "9f2c4e1a7b3d5f60@technical.invalid",
        "label": "Cash register software",
        "secret": "ts_7Hq2LrVx9KpZ3mWc5NbT8yFd",
        "secret_expires_at": "2027-02-02T10:00:00+00:00",
        "connection_file": "# Connection information of the technical user …\n"
        "AUTHZ_API_URL=https://authz.example.org\n"
        "AUTHZ_TECHNICAL_LOGIN=9f2c4e1a7b3d5f60@technical.invalid\n"
        "AUTHZ_TECHNICAL_SECRET=ts_7Hq2LrVx9KpZ3mWc5NbT8yFd\n"
        "AUTHZ_TECHNICAL_SECRET_EXPIRES_AT=2027-02-02T10:00:00+00:00\n",
    }


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

    example = {
        "user_id": 61,
        "login": "9f2c4e1a7b3d5f60@technical.invalid",
        "label": "Cash register software",
        "status": "active",
        "secret_expires_at": "2027-02-02T10:00:00+00:00",
        "secret_expired": False,
        "created_at": "2026-02-02T10:00:00+00:00",
        "created_by_id": 42,
        "rotated_at": None,
    }


class TechnicalTokenRequestSchema(Schema):
    login = f.login_email(required=True)
    secret = f.password(required=True)

    example = {
        "login": "9f2c4e1a7b3d5f60@technical.invalid",
        "secret": "ts_7Hq2LrVx9KpZ3mWc5NbT8yFd",
    }
