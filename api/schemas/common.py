"""What every blueprint's contract shares: the problem body, page arguments and
envelopes, and the outcome of a bulk operation."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from marshmallow import Schema, fields, validate


class Problem(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    code = fields.String(metadata={"description": "Stable machine-readable error code."})
    detail = fields.String()
    instance = fields.String()
    request_id = fields.String()
    errors = fields.Dict(metadata={"description": "Field name → messages."})


class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    page_size = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1),
        metadata={"description": "Capped at AUTHZ_PAGE_SIZE_MAX."},
    )


class RevisionPageArgs(PageArgs):
    at_least_revision = fields.Integer(validate=validate.Range(min=0))


def _page_fields(item_schema: type[Schema]) -> dict[str, fields.Field]:
    return {
        "items": fields.List(fields.Nested(item_schema)),
        "page": fields.Integer(),
        "page_size": fields.Integer(),
        "total": fields.Integer(),
    }


def _page_name(item_schema: type[Schema]) -> str:
    return f"{item_schema.__name__.removesuffix('Schema')}Page"


def _page_example(item_schema: type[Schema]) -> dict[str, Any] | None:
    item = getattr(item_schema, "example", None)
    if item is None:
        return None
    return {"items": [item], "page": 1, "page_size": 50, "total": 1}


@functools.cache
def page_of(item_schema: type[Schema]) -> type[Schema]:
    """A page envelope: {items, page, page_size, total}."""
    page = Schema.from_dict(_page_fields(item_schema), name=_page_name(item_schema))
    # A schema made by from_dict gets its example afterwards (a class attribute, as
    # a declared schema has; api/blueprint.py reads it); Schema does not declare it.
    page.example = _page_example(item_schema)  # type: ignore[attr-defined]
    return page


@functools.cache
def revision_page_of(item_schema: type[Schema]) -> type[Schema]:
    """A page envelope that also gives the policy revision it was computed at."""
    page = Schema.from_dict(
        {
            **_page_fields(item_schema),
            "revision": fields.Integer(),
            "policy_version": fields.Integer(allow_none=True),
        },
        name=_page_name(item_schema),
    )
    example = _page_example(item_schema)
    # The example as in page_of: a class attribute Schema does not declare.
    page.example = example and {**example, "revision": 4471}  # type: ignore[attr-defined]
    return page


REVISION = fields.Integer(
    required=True,
    metadata={
        "description": "The policy revision this write committed (also the Authz-Revision "
        "header): pass it as at_least_revision to a check that must see the write."
    },
)
REVISION_EXAMPLE = 4472


class WrittenSchema(Schema):
    """The answer of a write that has nothing else to say: its revision."""

    revision = REVISION

    example = {"revision": REVISION_EXAMPLE}


@functools.cache
def written(schema: type[Schema]) -> type[Schema]:
    """`schema` with the revision the write committed (api/revisions.py)."""
    name = schema.__name__.removesuffix("Schema") + "WrittenSchema"
    example = getattr(schema, "example", None)
    written_example = example and {**example, "revision": REVISION_EXAMPLE}
    # type() picks the schema's metaclass, which declares the new field.
    cls: type[Schema] = type(name, (schema,), {"revision": REVISION, "example": written_example})
    return cls


class OutcomeSchema(Schema):
    id = fields.Integer()
    ok = fields.Boolean()
    code = fields.String(allow_none=True)
    detail = fields.String(allow_none=True)

    example: ClassVar[dict[str, object]] = {"id": 31, "ok": True, "code": None, "detail": None}


class BulkOutcomeSchema(Schema):
    results = fields.List(fields.Nested(OutcomeSchema))

    example = {
        "results": [
            OutcomeSchema.example,
            {"id": 32, "ok": False, "code": "already_processed", "detail": "Already processed."},
        ]
    }
