"""Contracts of the `authzen` blueprint (api/authzen/routes.py): the OpenID
AuthZEN Authorization API 1.0 requests and answers.

As the specification requires, unknown members of a request are ignored: every
request schema here is `unknown = EXCLUDE`.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from authz.engine import authzen

from . import fields as f

TEXT_MAX = 512


class Lenient(Schema):
    """Unknown members are ignored (AuthZEN forward compatibility)."""

    class Meta:
        unknown = EXCLUDE


def _text(required: bool = False, description: str | None = None) -> fields.String:
    """A string member of an entity (at most TEXT_MAX characters). Only matched
    against what the service knows, never stored nor mailed: any character but
    NUL and lone surrogates, so that a strange id is a deny, as AuthZEN wants."""
    return f.text(max_length=TEXT_MAX, required=required, description=description, kind=f.OPAQUE)


def _free(description: str | None = None) -> fields.Dict:
    """An object the caller fills as it likes (properties, context)."""
    return fields.Dict(
        validate=f.safe_json, metadata={"description": description} if description else {}
    )


PROPERTIES = "Accepted and not used: decisions come from the service's own records."


# --- entities --------------------------------------------------------------------


class AuthzenSubjectSchema(Lenient):
    type = _text(True, '"user"; any other type is denied.')
    id = _text(True, "The user id, as a string.")
    properties = _free(PROPERTIES)


class AuthzenResourceSchema(Lenient):
    type = _text(True, '"space" or "structure"; any other type is denied.')
    id = _text(
        True,
        '"<structure id>/<space code>", "<structure id>/<service code>/'
        '<space code>" (space) or "<structure id>" (structure).',
    )
    properties = _free(PROPERTIES)


class AuthzenActionSchema(Lenient):
    name = _text(
        True,
        "consult, modify, create (spaces) or a management action of "
        "policies/roles.yaml (structures).",
    )
    properties = _free(PROPERTIES)


class AuthzenSearchedEntitySchema(Lenient):
    """The entity searched for: its type only (an id, if sent, is ignored)."""

    type = _text(True)
    id = _text(description="Ignored.")
    properties = _free(PROPERTIES)


class AuthzenDefaultEntitySchema(Lenient):
    """A top-level default of an evaluations request: members may be missing."""

    type = _text()
    id = _text()
    properties = _free()


class AuthzenDefaultActionSchema(Lenient):
    name = _text()
    properties = _free()


def _context() -> fields.Dict:
    """The request `context` member, with the keys the service reads."""
    return _free(
        "Read: at_least_revision (integer; answer at this policy revision or a newer one, "
        "else 503) and explain (boolean; add the facts behind each decision). Other keys "
        "are ignored."
    )


# --- requests ------------------------------------------------------------------


class AuthzenEvaluationSchema(Lenient):
    subject = fields.Nested(AuthzenSubjectSchema, required=True)
    action = fields.Nested(AuthzenActionSchema, required=True)
    resource = fields.Nested(AuthzenResourceSchema, required=True)
    context = _context()

    example = {
        "subject": {"type": "user", "id": "42"},
        "action": {"name": "consult"},
        "resource": {"type": "space", "id": "12/issued_invoices"},
        "context": {"at_least_revision": 4471},
    }


class AuthzenOptionsSchema(Lenient):
    evaluations_semantic = f.one_of(authzen.SEMANTICS, description="Default execute_all.")


class AuthzenEvaluationsSchema(Lenient):
    subject = fields.Nested(AuthzenDefaultEntitySchema)
    action = fields.Nested(AuthzenDefaultActionSchema)
    resource = fields.Nested(AuthzenDefaultEntitySchema)
    context = _context()
    evaluations = f.SafeJsonList(
        fields.Raw(allow_none=True, validate=f.safe_json),
        metadata={
            "description": (
                "Objects {subject, action, resource, context}, completed by the top-level values; "
                "at most AUTHZ_BATCH_MAX. Absent or empty: a single evaluation. An item that "
                "cannot be evaluated is denied with context.error."
            )
        },
    )
    options = fields.Nested(AuthzenOptionsSchema)

    example = {
        "subject": {"type": "user", "id": "42"},
        "evaluations": [
            {
                "action": {"name": "consult"},
                "resource": {"type": "space", "id": "12/issued_invoices"},
            },
            {"action": {"name": "users.manage"}, "resource": {"type": "structure", "id": "12"}},
        ],
        "options": {"evaluations_semantic": "execute_all"},
    }


class AuthzenPageRequestSchema(Lenient):
    token = f.text(max_length=2048, description="next_token of the previous page.")
    limit = fields.Integer(
        strict=True,
        validate=validate.Range(min=0),
        metadata={
            "description": "Default AUTHZ_PAGE_SIZE (50), capped at AUTHZ_PAGE_SIZE_MAX (200)."
        },
    )
    properties = _free("Ignored.")


class AuthzenSubjectSearchSchema(Lenient):
    subject = fields.Nested(AuthzenSearchedEntitySchema, required=True)
    action = fields.Nested(AuthzenActionSchema, required=True)
    resource = fields.Nested(AuthzenResourceSchema, required=True)
    context = _context()
    page = fields.Nested(AuthzenPageRequestSchema)

    example = {
        "subject": {"type": "user"},
        "action": {"name": "modify"},
        "resource": {"type": "space", "id": "12/ACCOUNTING/received_invoices"},
        "page": {"limit": 50},
    }


class AuthzenResourceSearchSchema(Lenient):
    subject = fields.Nested(AuthzenSubjectSchema, required=True)
    action = fields.Nested(AuthzenActionSchema, required=True)
    resource = fields.Nested(AuthzenSearchedEntitySchema, required=True)
    context = _context()
    page = fields.Nested(AuthzenPageRequestSchema)

    example = {
        "subject": {"type": "user", "id": "42"},
        "action": {"name": "consult"},
        "resource": {"type": "space"},
    }


class AuthzenActionSearchSchema(Lenient):
    subject = fields.Nested(AuthzenSubjectSchema, required=True)
    resource = fields.Nested(AuthzenResourceSchema, required=True)
    context = _context()
    page = fields.Nested(AuthzenPageRequestSchema)

    example = {
        "subject": {"type": "user", "id": "42"},
        "resource": {"type": "structure", "id": "12"},
    }


# --- responses -----------------------------------------------------------------


class AuthzenDecisionSchema(Schema):
    decision = fields.Boolean(required=True)
    context = fields.Dict(
        metadata={
            "description": (
                "revision, and rule (allowed) or reason (denied); explanation when asked for; "
                "error {status, code, message} for an evaluation that could not be made."
            )
        }
    )

    example = {
        "decision": True,
        "context": {
            "revision": 4471,
            "rule": "role-default:principal consult issued_invoices (spaces.yaml)",
        },
    }


class AuthzenEvaluationsResultSchema(AuthzenDecisionSchema):
    decision = fields.Boolean(metadata={"description": "Only for a single evaluation."})
    # Written by the view (api/authzen/wire.py decision): passed through.
    evaluations = f.WrittenList(
        fields.Nested(AuthzenDecisionSchema),
        metadata={
            "description": "In request order; shorter when a short-circuit semantic stopped."
        },
    )

    example = {
        "evaluations": [
            AuthzenDecisionSchema.example,
            {"decision": False, "context": {"revision": 4471, "reason": "no role on structure 12"}},
        ]
    }


class AuthzenPageSchema(Schema):
    next_token = fields.String(metadata={"description": '"" on the last page.'})
    count = fields.Integer()


class AuthzenEntitySchema(Schema):
    type = fields.String()
    id = fields.String()

    example = {"type": "user", "id": "42"}


class AuthzenActionNameSchema(Schema):
    name = fields.String()

    example = {"name": "consult"}


def _search_result(item: type[Schema], name: str) -> type[Schema]:
    """A search response whose results are `item`s."""
    result = Schema.from_dict(
        {
            "page": fields.Nested(AuthzenPageSchema),
            "context": fields.Dict(metadata={"description": "revision"}),
            "results": fields.List(fields.Nested(item)),
        },
        name=name,
    )
    # The examples are class attributes Schema does not declare (see common.page_of).
    result.example = {  # type: ignore[attr-defined]
        "page": {"next_token": "", "count": 1},
        "context": {"revision": 4471},
        "results": [item.example],  # type: ignore[attr-defined]
    }
    return result


AuthzenEntitiesSchema = _search_result(AuthzenEntitySchema, "AuthzenEntities")
AuthzenActionsSchema = _search_result(AuthzenActionNameSchema, "AuthzenActions")


class AuthzenConfigurationSchema(Schema):
    policy_decision_point = fields.String()
    access_evaluation_endpoint = fields.String()
    access_evaluations_endpoint = fields.String()
    search_subject_endpoint = fields.String()
    search_resource_endpoint = fields.String()
    search_action_endpoint = fields.String()

    example = {
        "policy_decision_point": "https://authz.example.org",
        "access_evaluation_endpoint": "https://authz.example.org/access/v1/evaluation",
        "access_evaluations_endpoint": "https://authz.example.org/access/v1/evaluations",
        "search_subject_endpoint": "https://authz.example.org/access/v1/search/subject",
        "search_resource_endpoint": "https://authz.example.org/access/v1/search/resource",
        "search_action_endpoint": "https://authz.example.org/access/v1/search/action",
    }
