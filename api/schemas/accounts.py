"""Contracts of the `auth` blueprint (api/auth.py): log-in, sign-up, activation
and one's own account; the account as everyone sees it."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from . import fields as f


class LoginSchema(Schema):
    login_email = f.login_email(required=True)
    password = f.password(required=True)


class TokenSchema(Schema):
    access_token = fields.String()
    token_type = fields.String(dump_default="Bearer")
    expires_at = fields.DateTime()


class SignUpSchema(Schema):
    login_email = f.email(required=True)
    contact_email = f.email(description="Defaults to the login email.")
    last_name = f.name(required=True)
    first_name = f.name(required=True)
    phone = f.phone()


class AccountCreateSchema(SignUpSchema):
    structure_id = fields.Integer(
        validate=validate.Range(min=1),
        metadata={
            "description": "Logged in (required then): the structure the manager "
            "creates the account for (users.manage there). Logged "
            "out: absent."
        },
    )


class ActivationSchema(Schema):
    token = f.text(1, 200, required=True)
    password = f.password(required=True)


class ResendActivationSchema(Schema):
    login_email = f.login_email(required=True)


class UserSchema(Schema):
    id = fields.Integer()
    login_email = fields.String()
    contact_email = fields.String()
    last_name = fields.String()
    first_name = fields.String()
    phone = fields.String(allow_none=True)
    kind = fields.String()
    status = fields.String()
    platform_role = fields.String(allow_none=True)
    created_at = fields.DateTime()
    activated_at = fields.DateTime(allow_none=True)


class ProfilePatchSchema(Schema):
    contact_email = f.email()
    last_name = f.name()
    first_name = f.name()
    phone = f.phone()
