"""Contracts of the `authzen` blueprint (api/authzen/routes.py): the OpenID
AuthZEN Authorization API 1.0 requests and answers.

As the specification requires, unknown members of a request are ignored: every
request schema here is `unknown = EXCLUDE`.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from authz.engine import authzen

TEXT_MAX = 512


class Lenient(Schema):
    """Unknown members are ignored (AuthZEN forward compatibility)."""

    class Meta:
        unknown = EXCLUDE


def _text(required: bool = False, description: str | None = None) -> fields.String:
    """A string member of an entity (at most TEXT_MAX characters)."""
    return fields.String(
        required=required,
        validate=validate.Length(max=TEXT_MAX),
        metadata={"description": description} if description else {},
    )


PROPERTIES = "Accepted and not used: decisions come from the service's own records."


# --- entities --------------------------------------------------------------------


class AuthzenSubjectSchema(Lenient):
    type = _text(True, '"user"; any other type is denied.')
    id = _text(True, "The user id, as a string.")
    properties = fields.Dict(metadata={"description": PROPERTIES})


class AuthzenResourceSchema(Lenient):
    type = _text(True, '"space" or "structure"; any other type is denied.')
    id = _text(
        True,
        '"<structure id>/<space code>", "<structure id>/<service code>/'
        '<space code>" (space) or "<structure id>" (structure).',
    )
    properties = fields.Dict(metadata={"description": PROPERTIES})


class AuthzenActionSchema(Lenient):
    name = _text(
        True,
        "consult, modify, create (spaces) or a management action of "
        "policies/roles.yaml (structures).",
    )
    properties = fields.Dict(metadata={"description": PROPERTIES})


class AuthzenSearchedEntitySchema(Lenient):
    """The entity searched for: its type only (an id, if sent, is ignored)."""

    type = _text(True)
    id = _text(description="Ignored.")
    properties = fields.Dict(metadata={"description": PROPERTIES})


class AuthzenDefaultEntitySchema(Lenient):
    """A top-level default of an evaluations request: members may be missing."""

    type = _text()
    id = _text()
    properties = fields.Dict()


class AuthzenDefaultActionSchema(Lenient):
    name = _text()
    properties = fields.Dict()


def _context() -> fields.Dict:
    """The request `context` member, with the keys the service reads."""
    return fields.Dict(
        metadata={
            "description": (
                "Read: at_least_revision (integer; answer at this policy revision or a newer one, "
                "else 503) and explain (boolean; add the facts behind each decision). Other keys "
                "are ignored."
            )
        }
    )


# --- requests ------------------------------------------------------------------


class AuthzenEvaluationSchema(Lenient):
    subject = fields.Nested(AuthzenSubjectSchema, required=True)
    action = fields.Nested(AuthzenActionSchema, required=True)
    resource = fields.Nested(AuthzenResourceSchema, required=True)
    context = _context()


class AuthzenOptionsSchema(Lenient):
    evaluations_semantic = fields.String(
        validate=validate.OneOf(authzen.SEMANTICS), metadata={"description": "Default execute_all."}
    )


class AuthzenEvaluationsSchema(Lenient):
    subject = fields.Nested(AuthzenDefaultEntitySchema)
    action = fields.Nested(AuthzenDefaultActionSchema)
    resource = fields.Nested(AuthzenDefaultEntitySchema)
    context = _context()
    evaluations = fields.List(
        fields.Raw(allow_none=True),
        metadata={
            "description": (
                "Objects {subject, action, resource, context}, completed by the top-level values; "
                "at most AUTHZ_BATCH_MAX. Absent or empty: a single evaluation. An item that "
                "cannot be evaluated is denied with context.error."
            )
        },
    )
    options = fields.Nested(AuthzenOptionsSchema)


class AuthzenPageRequestSchema(Lenient):
    token = fields.String(
        validate=validate.Length(max=2048),
        metadata={"description": "next_token of the previous page."},
    )
    limit = fields.Integer(
        strict=True,
        validate=validate.Range(min=0),
        metadata={
            "description": "Default AUTHZ_PAGE_SIZE (50), capped at AUTHZ_PAGE_SIZE_MAX (200)."
        },
    )
    properties = fields.Dict(metadata={"description": "Ignored."})


class AuthzenSubjectSearchSchema(Lenient):
    subject = fields.Nested(AuthzenSearchedEntitySchema, required=True)
    action = fields.Nested(AuthzenActionSchema, required=True)
    resource = fields.Nested(AuthzenResourceSchema, required=True)
    context = _context()
    page = fields.Nested(AuthzenPageRequestSchema)


class AuthzenResourceSearchSchema(Lenient):
    subject = fields.Nested(AuthzenSubjectSchema, required=True)
    action = fields.Nested(AuthzenActionSchema, required=True)
    resource = fields.Nested(AuthzenSearchedEntitySchema, required=True)
    context = _context()
    page = fields.Nested(AuthzenPageRequestSchema)


class AuthzenActionSearchSchema(Lenient):
    subject = fields.Nested(AuthzenSubjectSchema, required=True)
    resource = fields.Nested(AuthzenResourceSchema, required=True)
    context = _context()
    page = fields.Nested(AuthzenPageRequestSchema)


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


class AuthzenEvaluationsResultSchema(AuthzenDecisionSchema):
    decision = fields.Boolean(metadata={"description": "Only for a single evaluation."})
    evaluations = fields.List(
        fields.Nested(AuthzenDecisionSchema),
        metadata={
            "description": "In request order; shorter when a short-circuit semantic stopped."
        },
    )


class AuthzenPageSchema(Schema):
    next_token = fields.String(metadata={"description": '"" on the last page.'})
    count = fields.Integer()


class AuthzenEntitySchema(Schema):
    type = fields.String()
    id = fields.String()


class AuthzenActionNameSchema(Schema):
    name = fields.String()


def _search_result(item: type[Schema], name: str) -> type[Schema]:
    """A search response whose results are `item`s."""
    return Schema.from_dict(
        {
            "page": fields.Nested(AuthzenPageSchema),
            "context": fields.Dict(metadata={"description": "revision"}),
            "results": fields.List(fields.Nested(item)),
        },
        name=name,
    )


AuthzenEntitiesSchema = _search_result(AuthzenEntitySchema, "AuthzenEntities")
AuthzenActionsSchema = _search_result(AuthzenActionNameSchema, "AuthzenActions")


class AuthzenConfigurationSchema(Schema):
    policy_decision_point = fields.String()
    access_evaluation_endpoint = fields.String()
    access_evaluations_endpoint = fields.String()
    search_subject_endpoint = fields.String()
    search_resource_endpoint = fields.String()
    search_action_endpoint = fields.String()
