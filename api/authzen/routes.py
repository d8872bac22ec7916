"""OpenID AuthZEN Authorization API 1.0: /access/v1/* and the discovery document.

Each view reads the body into plain values (wire.py), asks the engine
(authz/engine/authzen.py) and writes its answer back (wire.py). As the
specification requires, unknown members of a request are ignored (every
request schema of api/schemas/authzen.py is `unknown = EXCLUDE`) and a
malformed request — a required member missing or of the wrong JSON type, a
body that is not a JSON object, a Content-Type other than application/json —
is a 400 problem (elsewhere in this API such requests are 422). Client
applications call these routes with their API key; a person may call them with
their bearer token about themself only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

from flask import request
from flask.views import MethodView
from marshmallow import Schema

from authz.engine import authzen
from authz.errors import Invalid
from authz.runtime import Runtime

from .. import schemas as s
from ..blueprint import Blueprint
from ..errors import problem
from ..identity import caller, for_clients, public, runtime
from . import wire

blp = Blueprint("authzen", __name__, description="OpenID AuthZEN Authorization API 1.0")

BAD_REQUEST = 400


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
        view = blp.problem(status, description)(view)
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
    @blp.operation("evaluate_access")
    @for_clients
    @_arguments(s.AuthzenEvaluationSchema)
    @blp.response(200, s.AuthzenDecisionSchema)
    @_documented
    @bad_request
    def post(self, body):
        """Access Evaluation: may this subject perform this action on this resource?"""
        return _evaluate(runtime(), body)


@blp.route(wire.ENDPOINTS["access_evaluations_endpoint"])
class Evaluations(MethodView):
    @blp.operation("evaluate_access_batch")
    @for_clients
    @_arguments(s.AuthzenEvaluationsSchema)
    @blp.response(200, s.AuthzenEvaluationsResultSchema)
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
        return {"evaluations": wire.decisions(answers)}


@blp.route(wire.ENDPOINTS["search_subject_endpoint"])
class SubjectSearch(MethodView):
    @blp.operation("search_subjects")
    @for_clients
    @_arguments(s.AuthzenSubjectSearchSchema)
    @blp.response(200, s.AuthzenEntitiesSchema)
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
    @blp.operation("search_resources")
    @for_clients
    @_arguments(s.AuthzenResourceSearchSchema)
    @blp.response(200, s.AuthzenEntitiesSchema)
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
    @blp.operation("search_actions")
    @for_clients
    @_arguments(s.AuthzenActionSearchSchema)
    @blp.response(200, s.AuthzenActionsSchema)
    @_documented
    @bad_request
    def post(self, body):
        """Action Search: which actions may this user perform on this resource?"""
        rt, asked = runtime(), wire.action_search(body)
        search = authzen.search_actions(rt, caller(), asked.user_id, asked.target)
        return _one_page(rt, body, search, asked.at_least, wire.action_entity)


@blp.route(wire.METADATA_PATH)
class Configuration(MethodView):
    @blp.operation("get_authzen_configuration")
    @public
    @blp.response(200, s.AuthzenConfigurationSchema)
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
