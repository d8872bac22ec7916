"""Fields the contracts share, written once over the domain's constants.

Every string an API body or query carries is read by `Text` (through the
functions below), which refuses what the service cannot store or send on:
NUL (PostgreSQL refuses it in text), lone surrogates (no UTF-8 encoding), and
control characters in any single-line value, since names, designations, codes
and emails end up in mail headers and lines (docs/decisions.md: which fields
take line breaks). Ids are `record_id`: within the range of the id columns on
every backend (models.ID_MAX).

Each function returns a new field: a marshmallow field holds per-schema state,
so one instance must not serve two schemas.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from marshmallow import ValidationError, fields, validate

from authz.workflows.attachments import REQUESTABLE_ROLES
from models import ID_MAX, LEVELS

from ..inputs import body_without_escapes

# What a string may not hold, by kind of value. NUL and lone surrogates are
# refused in every kind.
SINGLE_LINE = "single line"  # names, codes, emails…: no control character at all
MULTI_LINE = "multi-line"  # comments and reasons: tabs and line breaks too
OPAQUE = "opaque"  # passwords, secrets, tokens: compared, never shown nor mailed
_REFUSED = {
    SINGLE_LINE: re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"),
    MULTI_LINE: re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"),
    OPAQUE: re.compile("[\x00\ud800-\udfff]"),
}
_SURROGATE = re.compile("[\ud800-\udfff]")
_WHY = {
    SINGLE_LINE: "Must not contain control characters (a single line, no tab).",
    MULTI_LINE: "Must not contain control characters other than tabs and line breaks.",
}


def unsafe_text(value: str, kind: str = SINGLE_LINE) -> str | None:
    """Why `value` cannot be a string of this `kind`, or None if it can."""
    found = _REFUSED[kind].search(value)
    if found is None:
        return None
    if "\x00" in value:
        return "Must not contain a NUL character."
    if _SURROGATE.search(value):
        return "Must not contain an unpaired surrogate."
    return _WHY[kind]


class Text(fields.String):
    """A string without what `kind` refuses (see unsafe_text)."""

    def __init__(self, *, kind: str = SINGLE_LINE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kind = kind

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        why = unsafe_text(text, self.kind)
        if why is not None:
            raise ValidationError(why)
        return text


class EmailText(Text, fields.Email):
    """An email address, a single line."""


class WrittenList(fields.List):
    """A list of answers the view already wrote as plain JSON values (dicts
    with the keys, order and types the inner field would give): passed through
    as is, without a dump per item. The OpenAPI document still describes the
    inner field."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:  # noqa: ARG002 - marshmallow's signature
        return None if value is None else list(value)


def safe_json(value: Any) -> None:
    """Validate free JSON (AuthZEN properties and contexts): no key or string in
    it holds NUL or a lone surrogate."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and (why := unsafe_text(item, OPAQUE)) is not None:
            raise ValidationError(why)


def all_safe_json(value: Any, safe: set[str]) -> bool:
    """Whether safe_json accepts `value`; the strings found safe are added to
    `safe` and not searched again. Only says yes or no: where it says no,
    safe_json gives the message."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            for key, member in item.items():
                if type(key) is not str:
                    pending.append(key)
                elif key not in safe:
                    if unsafe_text(key, OPAQUE) is not None:
                        return False
                    safe.add(key)
                kind = type(member)
                if kind is str:
                    if member not in safe:
                        if unsafe_text(member, OPAQUE) is not None:
                            return False
                        safe.add(member)
                elif member is not None and kind is not int and kind is not bool:
                    pending.append(member)  # containers (floats end below)
        elif kind is list:
            pending.extend(item)
        elif kind is str:
            if item not in safe:
                if unsafe_text(item, OPAQUE) is not None:
                    return False
                safe.add(item)
        elif isinstance(item, (dict, list, str)) and not _passes_safe_json(item):
            return False  # a subclass (never from JSON): as safe_json reads it
    return True


def _passes_safe_json(value: Any) -> bool:
    try:
        safe_json(value)
    except ValidationError:
        return False
    return True


class SafeJsonList(fields.List):
    """A list of free JSON values, each checked with safe_json (the inner field
    carries that validator). When every item passes — the strings of a batch
    repeat, each is searched once — the list loads as is, without the inner
    field's per-item call; otherwise the inner field loads each item, and the
    errors are marshmallow's (tests/test_authzen_batch_fast.py). A list read
    from a request body without `\\u` escapes holds nothing safe_json refuses
    (api/inputs.py, body_without_escapes): it is not searched at all."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if type(value) is list:
            body = body_without_escapes()
            if (
                isinstance(body, dict) and body.get(self.data_key or self.name) is value
            ) or all_safe_json(value, set()):
                return list(value)
        return super()._deserialize(value, attr, data, **kwargs)


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
    return Text(metadata=_described(metadata, description), **kwargs)


def one_of(values: Sequence[str], *, description: str | None = None, **kwargs: Any) -> Text:
    """A string that is one of `values` (a constant of models or authz, never a copy)."""
    return Text(validate=validate.OneOf(values), metadata=_described(None, description), **kwargs)


def record_id(*, description: str | None = None, **kwargs: Any) -> fields.Integer:
    """The id of a row: 1 to ID_MAX, the range every backend's id columns hold."""
    metadata = _described({"format": "int32"}, description)
    return fields.Integer(validate=validate.Range(min=1, max=ID_MAX), metadata=metadata, **kwargs)


class ServiceRef(fields.Field):
    """A service of the structure at hand, by id (a JSON integer) or by code (a
    JSON string, case ignored). Loads as the int or the stripped code; the
    workflow resolves a code within that structure only (authz/workflows/
    service_refs.py), so another structure's code is as unknown as a bad id."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        value = super()._deserialize(value, attr, data, **kwargs)  # the raw JSON value
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= ID_MAX:
                raise ValidationError(f"A service id is between 1 and {ID_MAX}.")
            return value
        if isinstance(value, str):
            code = value.strip()
            if not 1 <= len(code) <= CODE_MAX:
                raise ValidationError(f"A service code has 1 to {CODE_MAX} characters.")
            why = unsafe_text(code)
            if why is not None:
                raise ValidationError(why)
            return code
        raise ValidationError("A service id (integer) or code (string).")


def service_ref(*, description: str | None = None, **kwargs: Any) -> ServiceRef:
    """A service by id or code (OpenAPI: oneOf integer, string; null too when
    allow_none)."""
    choices: list[dict[str, Any]] = [
        {"type": "integer", "format": "int32", "minimum": 1, "maximum": ID_MAX},
        {"type": "string", "minLength": 1, "maxLength": CODE_MAX, "description": "its code"},
    ]
    if kwargs.get("allow_none"):
        choices.append({"type": "null"})
    metadata = _described({"oneOf": choices}, description or "A service: its id or its code.")
    return ServiceRef(metadata=metadata, **kwargs)


def name(**kwargs: Any) -> fields.String:
    """A last or first name."""
    return text(1, NAME_MAX, **kwargs)


def email(**kwargs: Any) -> EmailText:
    """An email address the service will write to."""
    description = kwargs.pop("description", None)
    return EmailText(
        validate=validate.Length(max=EMAIL_MAX), metadata=_described(None, description), **kwargs
    )


def login_email(**kwargs: Any) -> fields.String:
    """A login email as typed at log-in: any text, compared with the accounts'."""
    return text(1, EMAIL_MAX, **kwargs)


def password(**kwargs: Any) -> fields.String:
    """A password or secret: read, never written back, compared and never shown,
    so any character but NUL and lone surrogates (an earlier password may hold one)."""
    return text(1, PASSWORD_MAX, load_only=True, kind=OPAQUE, **kwargs)


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
    """An optional free comment, written in the history and in mail bodies:
    it may take several lines."""
    return text(max_length=COMMENT_MAX, allow_none=True, kind=MULTI_LINE, **kwargs)


def reason(**kwargs: Any) -> fields.String:
    """The required reason of a refusal, written in the history and in mail
    bodies: it may take several lines."""
    return text(1, COMMENT_MAX, required=True, kind=MULTI_LINE, **kwargs)


def search_term(what: str) -> fields.String:
    """Part of a name, matched ignoring case and accents."""
    return text(1, SEARCH_MAX, description=f"Part of the {what}; case and accents ignored.")


def ids(max_items: int = BULK_MAX, **kwargs: Any) -> fields.List:
    """The required, non-empty list of ids a bulk operation acts on."""
    return fields.List(
        record_id(),
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
