"""Contracts of the `auth` blueprint (api/auth.py): log-in, sign-up, activation
and one's own account; the account as everyone sees it."""

from __future__ import annotations

from marshmallow import Schema, fields

from authz import passwords

from . import fields as f


class LoginSchema(Schema):
    login_email = f.login_email(required=True)
    password = f.password(required=True)

    example = {
        "login_email": "claire.martin@example.org",
        "password": "correct horse battery staple",
    }


class TokenSchema(Schema):
    access_token = fields.String()
    token_type = fields.String(dump_default="Bearer")
    expires_at = fields.DateTime()

    example = {
        "access_token": "Yk3v0ZrQm5F2h7t9XcLw1sPa8uDe4bNo6jGi",
        "token_type": "Bearer",
        "expires_at": "2026-03-02T17:30:00+00:00",
    }


class SignUpSchema(Schema):
    login_email = f.email(required=True)
    contact_email = f.email(description="Defaults to the login email.")
    last_name = f.name(required=True)
    first_name = f.name(required=True)
    phone = f.phone()

    example = {
        "login_email": "claire.martin@example.org",
        "last_name": "Martin",
        "first_name": "Claire",
        "phone": "+33 6 12 34 56 78",
    }


class AccountCreateSchema(SignUpSchema):
    structure_id = f.record_id(
        description="Logged in (required then): the structure the manager "
        "creates the account for (users.manage there). Logged out: absent."
    )


class ActivationSchema(Schema):
    token = f.text(1, 200, required=True, kind=f.OPAQUE)
    # The password policy is authz/passwords.py's (422 weak_password): its
    # lengths declared here.
    password = f.password(
        required=True,
        metadata={"minLength": passwords.MIN_LENGTH, "maxLength": passwords.MAX_LENGTH},
    )

    example = {
        "token": "3q2T7xYb0c9LmN1pQr5sUv8wXz4AbCdE",
        "password": "correct horse battery staple",
    }


class ResendActivationSchema(Schema):
    login_email = f.login_email(required=True)

    example = {"login_email": "claire.martin@example.org"}


class PasswordResetEmailSchema(ResendActivationSchema):
    """Ask for a "forgot password" link (always 202)."""


class PasswordResetSchema(ActivationSchema):
    """The mailed "forgot password" token and the new password."""


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

    example = {
        "id": 42,
        "login_email": "claire.martin@example.org",
        "contact_email": "claire.martin@example.org",
        "last_name": "Martin",
        "first_name": "Claire",
        "phone": "+33 6 12 34 56 78",
        "kind": "person",
        "status": "active",
        "platform_role": None,
        "created_at": "2026-01-05T09:12:00+00:00",
        "activated_at": "2026-01-05T09:20:00+00:00",
    }


class ProfilePatchSchema(Schema):
    contact_email = f.email()
    last_name = f.name()
    first_name = f.name()
    phone = f.phone()

    example = {"contact_email": "compta@boulangerie-martin.example", "phone": "+33 1 23 45 67 89"}
