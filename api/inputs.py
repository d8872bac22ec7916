"""What the service accepts before a schema reads it.

- Ids in paths (`<id:name>`): a decimal from 1 to models.ID_MAX, the range
  of the id columns on every backend. Anything else matches no route: 404,
  before a query could fail on a number the column cannot hold.
- JSON bodies nest at most JSON_DEPTH_MAX levels: deeper is a 400 problem
  `json_too_deep`, whatever reads the body next (marshmallow, the AuthZEN
  wire format) never recursing into it. The body is parsed once, by webargs
  with this module's loader (Parser).
"""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma
from flask import g, has_app_context
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

from models import ID_MAX

# The deepest legitimate body (an AuthZEN evaluations request with properties)
# nests about 6 levels; 32 leaves room for properties a caller sends as it likes.
JSON_DEPTH_MAX = 32


class IdConverter(IntegerConverter):
    """`<id:name>`: an id from 1 to ID_MAX (werkzeug's int converter, bounded)."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", ID_MAX)
        super().__init__(url_map, *args, **kwargs)


def id_parameter_schema(converter: IdConverter) -> dict[str, Any]:
    """How the OpenAPI document describes an `<id:…>` path parameter."""
    return {
        "type": "integer",
        "format": "int32",
        "minimum": converter.min,
        "maximum": converter.max,
    }


class JsonTooDeep(BadRequest):
    problem_code = "json_too_deep"
    description = f"The JSON body nests deeper than {JSON_DEPTH_MAX} levels."


def nests_deeper(value: Any, limit: int) -> bool:
    """Whether `value` (parsed JSON) nests more than `limit` arrays or objects
    (`[]` is one level, `[[]]` two); level by level, each container visited
    once, stopping past the limit."""
    containers = (dict, list)
    level = [value] if isinstance(value, containers) else []
    for _ in range(limit):
        if not level:
            return False
        inner: list[Any] = []
        for item in level:  # a list comprehension: a batch body holds thousands
            inner += [
                v
                for v in (item.values() if isinstance(item, dict) else item)
                if isinstance(v, containers)
            ]
        level = inner
    return bool(level)


# Every byte but brackets, quotes and backslashes; an innermost (empty) pair.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"\\')
_EMPTY_PAIR = re.compile(rb"\[\]|\{\}")


def text_nests_at_most(data: bytes, limit: int) -> bool | None:
    """Whether the well-formed JSON text `data` nests at most `limit` arrays or
    objects, read from its brackets in C (bytes.translate, one regular
    expression per level) rather than by visiting every parsed container;
    None when the text alone cannot tell quickly: a string holds a backslash
    or a bracket.

    With no backslash, every quote opens or closes a string; with no bracket
    inside strings, each string leaves `""`, which removing leaves the
    brackets of the structure alone (a bracket inside a string leaves a quote
    behind). Each pass of _EMPTY_PAIR then removes exactly one level. A
    parsed value nests no deeper than its text (a repeated key only drops a
    member): True settles it, False is settled on the value (nests_deeper).
    tests/test_input_hardening.py compares both."""
    brackets = data.translate(None, _NOT_STRUCTURE)
    if b"\\" in brackets:
        return None
    brackets = brackets.replace(b'""', b"")
    if b'"' in brackets:
        return None
    for _ in range(limit):
        if not brackets:
            return True
        brackets = _EMPTY_PAIR.sub(b"", brackets)
    return not brackets


def load_json(data: bytes) -> Any:
    """A JSON body, refused (JsonTooDeep) when it nests too deep. Python's parser
    itself gives up (RecursionError) near a thousand levels: that is too deep too."""
    try:
        value = core.parse_json(data)
    except RecursionError:
        raise JsonTooDeep from None
    if not text_nests_at_most(data, JSON_DEPTH_MAX) and nests_deeper(value, JSON_DEPTH_MAX):
        raise JsonTooDeep
    return value


class Parser(FlaskParser):
    """webargs' Flask parser, reading JSON bodies with load_json.

    A schema given as a class is instantiated once per class, not once per
    request as webargs does: a marshmallow Schema deep-copies its declared
    fields when instantiated, which cost a check more than its decision
    (issue 13). The service's schemas keep no state between loads, so one
    instance serves every thread. The OpenAPI document still gets the class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._schemas: dict[type[ma.Schema], ma.Schema] = {}

    def _get_schema(self, argmap: Any, req: Any) -> ma.Schema:
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._schemas.get(argmap)
            if schema is None:
                schema = self._schemas.setdefault(argmap, argmap())
            return schema
        found: ma.Schema = super()._get_schema(argmap, req)
        return found

    def _raw_load_json(self, req: Any) -> Any:
        if not is_json_request(req):
            return core.missing
        data = req.get_data(cache=True)
        value = load_json(data)
        g.authz_body_without_escapes = None if b"\\u" in data else value
        return value


def body_without_escapes() -> Any:
    """The request's JSON body as Parser read it, when its text holds no `\\u`
    escape; None otherwise (or outside a request).

    Such a body holds no NUL and no lone surrogate in any string or key: the
    body is decoded as strict UTF-8 (no surrogates) and parsed by a strict JSON
    parser (no raw control characters in strings), so only an escape could
    write them. What it says of a value holds only for that very object
    (compare with `is`)."""
    if not has_app_context():
        return None
    return g.get("authz_body_without_escapes")
