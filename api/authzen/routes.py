"""OpenID AuthZEN Authorization API 1.0: /access/v1/* and the discovery document.

Each view reads the body into plain values (wire.py), asks the engine
(authz/engine/authzen.py) and writes its answer back (wire.py). As the
specification requires, unknown members of a request are ignored (every schema
here is `unknown = EXCLUDE`) and a malformed request — a required member
missing or of the wrong JSON type, a body that is not a JSON object, a
Content-Type other than application/json — is a 400 problem (elsewhere in this
API such requests are 422). Client applications call these routes with their
API key; a person may call them with their bearer token about themself only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, fields, validate

from authz.engine import authzen
from authz.errors import Invalid
from authz.runtime import Runtime

from .. import schemas as s
from ..errors import problem
from ..identity import caller, for_clients, public, runtime
from . import wire

blp = Blueprint("authzen", __name__, description="OpenID AuthZEN Authorization API 1.0")

BAD_REQUEST = 400
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


# --- views ---------------------------------------------------------------------


def bad_request(view: Callable[..., Any]) -> Callable[..., Any]:
    """Answer Invalid with 400, the status AuthZEN gives a malformed request."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except Invalid as error:
            return problem(BAD_REQUEST, error.code, "Bad request", error.detail, **error.extra)

    return wrapper


def _arguments(schema: type[Schema]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The JSON body loaded with `schema`; a body that does not load is a 400."""
    return blp.arguments(schema, error_status_code=BAD_REQUEST)


def _documented(view: Callable[..., Any]) -> Callable[..., Any]:
    """Document the error responses every POST route shares."""
    for status, description in (
        (401, "No valid API key or bearer token"),
        (403, "A person asking about someone else"),
        (503, "context.at_least_revision not reached yet"),
    ):
        view = blp.alt_response(status, schema=s.Problem, description=description)(view)
    return view


def _evaluate(rt: Runtime, body: Mapping[str, Any]) -> dict[str, Any]:
    """One evaluation: read, decided, written back."""
    ask = wire.evaluation(body, rt.policies.actions)
    return wire.decision(authzen.evaluate(rt, caller(), ask))


def _one_page(
    rt: Runtime,
    body: Mapping[str, Any],
    search: authzen.Search,
    at_least: int | None,
    entity_of: Callable[[Any], dict[str, str]],
) -> dict[str, Any]:
    """The page of `search` the body asks for (its token checked against the
    search's key), decided and written back with `entity_of`."""
    page = wire.page_of(body, rt.settings, search.key_types)
    return wire.results(search.page(page.after, page.limit, at_least), page, entity_of)


@blp.route(wire.ENDPOINTS["access_evaluation_endpoint"])
class Evaluation(MethodView):
    @for_clients
    @_arguments(AuthzenEvaluationSchema)
    @blp.response(200, AuthzenDecisionSchema)
    @_documented
    @bad_request
    def post(self, body):
        """Access Evaluation: may this subject perform this action on this resource?"""
        return _evaluate(runtime(), body)


@blp.route(wire.ENDPOINTS["access_evaluations_endpoint"])
class Evaluations(MethodView):
    @for_clients
    @_arguments(AuthzenEvaluationsSchema)
    @blp.response(200, AuthzenEvaluationsResultSchema)
    @_documented
    @bad_request
    def post(self, body):
        """Access Evaluations: several decisions at one revision, with top-level defaults
        and options.evaluations_semantic."""
        rt = runtime()
        if not wire.is_batch(body):  # a single evaluation, and so is the answer
            return _evaluate(rt, body)
        batch = wire.evaluations(body, rt.policies.actions, rt.settings.batch_max)
        answers = authzen.evaluate_many(
            rt, caller(), batch.items, semantic=batch.semantic, at_least=batch.at_least
        )
        return {"evaluations": [wire.decision(answer) for answer in answers]}


@blp.route(wire.ENDPOINTS["search_subject_endpoint"])
class SubjectSearch(MethodView):
    @for_clients
    @_arguments(AuthzenSubjectSearchSchema)
    @blp.response(200, AuthzenEntitiesSchema)
    @_documented
    @bad_request
    def post(self, body):
        """Subject Search: which users may perform this action on this resource
        (client applications only)."""
        rt, asked = runtime(), wire.subject_search(body)
        search = authzen.search_subjects(rt, caller(), asked.target, asked.action)
        return _one_page(rt, body, search, asked.at_least, wire.user_entity)


@blp.route(wire.ENDPOINTS["search_resource_endpoint"])
class ResourceSearch(MethodView):
    @for_clients
    @_arguments(AuthzenResourceSearchSchema)
    @blp.response(200, AuthzenEntitiesSchema)
    @_documented
    @bad_request
    def post(self, body):
        """Resource Search: on which spaces or structures may this user perform this
        action?"""
        rt, asked = runtime(), wire.resource_search(body)
        search = authzen.search_resources(rt, caller(), asked.user_id, asked.action, asked.kind)
        return _one_page(rt, body, search, asked.at_least, wire.resource_of)


@blp.route(wire.ENDPOINTS["search_action_endpoint"])
class ActionSearch(MethodView):
    @for_clients
    @_arguments(AuthzenActionSearchSchema)
    @blp.response(200, AuthzenActionsSchema)
    @_documented
    @bad_request
    def post(self, body):
        """Action Search: which actions may this user perform on this resource?"""
        rt, asked = runtime(), wire.action_search(body)
        search = authzen.search_actions(rt, caller(), asked.user_id, asked.target)
        return _one_page(rt, body, search, asked.at_least, wire.action_entity)


@blp.route(wire.METADATA_PATH)
class Configuration(MethodView):
    @public
    @blp.response(200, AuthzenConfigurationSchema)
    @blp.doc(security=[])
    def get(self):
        """AuthZEN PDP metadata: the endpoints, as absolute URLs under AUTHZ_PUBLIC_BASE_URL,
        or when it is unset under the URL this document was fetched from (public,
        cacheable for an hour)."""
        configured = runtime().settings.public_base_url
        body = wire.metadata(configured or request.url_root)
        headers = {"Cache-Control": "public, max-age=3600"}
        if not configured:
            headers["Vary"] = "Host"
        return body, 200, headers
