"""Fields the contracts share, written once over the domain's constants.

Each function returns a new field: a marshmallow field holds per-schema state,
so one instance must not serve two schemas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from marshmallow import fields, validate

from authz.workflows.attachments import REQUESTABLE_ROLES
from models import LEVELS

NAME_MAX = 100
EMAIL_MAX = 254
PHONE_MAX = 40
PASSWORD_MAX = 1024
COMMENT_MAX = 2000
CODE_MAX = 64
LABEL_MAX = 200
DESIGNATION_MAX = 200
IDENTIFIER_MAX = 80
SEARCH_MAX = 200
BULK_MAX = 200


def _described(metadata: dict[str, Any] | None, description: str | None) -> dict[str, Any]:
    out = dict(metadata or {})
    if description:
        out["description"] = description
    return out


def text(
    min_length: int | None = None,
    max_length: int | None = None,
    *,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    **kwargs: Any,
) -> fields.String:
    """A string, its length bounded when bounds are given."""
    if min_length is not None or max_length is not None:
        kwargs.setdefault("validate", validate.Length(min=min_length, max=max_length))
    return fields.String(metadata=_described(metadata, description), **kwargs)


def one_of(
    values: Sequence[str], *, description: str | None = None, **kwargs: Any
) -> fields.String:
    """A string that is one of `values` (a constant of models or authz, never a copy)."""
    return fields.String(
        validate=validate.OneOf(values), metadata=_described(None, description), **kwargs
    )


def name(**kwargs: Any) -> fields.String:
    """A last or first name."""
    return text(1, NAME_MAX, **kwargs)


def email(**kwargs: Any) -> fields.Email:
    """An email address the service will write to."""
    description = kwargs.pop("description", None)
    return fields.Email(
        validate=validate.Length(max=EMAIL_MAX), metadata=_described(None, description), **kwargs
    )


def login_email(**kwargs: Any) -> fields.String:
    """A login email as typed at log-in: any text, compared with the accounts'."""
    return text(1, EMAIL_MAX, **kwargs)


def password(**kwargs: Any) -> fields.String:
    """A password or secret: read, never written back."""
    return text(1, PASSWORD_MAX, load_only=True, **kwargs)


def phone() -> fields.String:
    return text(max_length=PHONE_MAX, allow_none=True)


def code(**kwargs: Any) -> fields.String:
    """A space or service code."""
    return text(1, CODE_MAX, **kwargs)


def designation(**kwargs: Any) -> fields.String:
    """A structure's designation."""
    return text(1, DESIGNATION_MAX, **kwargs)


def identifier_value(**kwargs: Any) -> fields.String:
    return text(1, IDENTIFIER_MAX, **kwargs)


def comment(**kwargs: Any) -> fields.String:
    """An optional free comment, written in the history and in mails."""
    return text(max_length=COMMENT_MAX, allow_none=True, **kwargs)


def reason(**kwargs: Any) -> fields.String:
    """The required reason of a refusal, written in the history and in mails."""
    return text(1, COMMENT_MAX, required=True, **kwargs)


def search_term(what: str) -> fields.String:
    """Part of a name, matched ignoring case and accents."""
    return text(1, SEARCH_MAX, description=f"Part of the {what}; case and accents ignored.")


def ids(max_items: int = BULK_MAX, **kwargs: Any) -> fields.List:
    """The required, non-empty list of ids a bulk operation acts on."""
    return fields.List(
        fields.Integer(validate=validate.Range(min=1)),
        required=True,
        validate=validate.Length(min=1, max=max_items),
        **kwargs,
    )


def requestable_role(**kwargs: Any) -> fields.String:
    """A role a manager may give on attachment (never principal or technical)."""
    return one_of(REQUESTABLE_ROLES, **kwargs)


def level(**kwargs: Any) -> fields.String:
    """A subscription level."""
    return one_of(LEVELS, **kwargs)
