"""The blueprint every resource of the API is made with: flask-smorest's, with
the contract's conventions applied once instead of in each view.

- Every operation names its `operationId` (`@blp.operation("create_structure")`:
  snake_case, verb first). Generated clients name their functions after it, so
  it is written, never derived from a class or function name that a refactoring
  may change.
- Errors are problems: `@blp.problem(409, "why")` declares an
  application/problem+json response with the Problem schema (api/errors.py
  serves every error that way).
- The answers every operation of a kind can give are declared from the facts
  that cause them, never listed by hand: `security: []` on a view marked
  @public, 401 on every other; 403 `client_not_allowed` where a client key is
  refused (a view not marked @for_clients); 404 where the path names an id;
  400, 413 and 422 where a JSON body is read; 422 where query arguments are;
  414 and 431 on every operation (gunicorn's limits on the request line and
  the headers, answered as problems by api/gunicorn_worker.py: any URL can be
  made too long).
  A view's own `problem()` of the same status adds its description.
- A schema's `example` class attribute is the example of the body or answer it
  describes (lists and pages of items are built from the item's example).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import flask_smorest
from flask.views import MethodView
from marshmallow import Schema

from .errors import PROBLEM_TYPE
from .identity import FOR_CLIENTS, PUBLIC, has_mark
from .inputs import Parser
from .schemas import Problem

View = Callable[..., Any]

OPERATION_ID = re.compile(r"[a-z]+(_[a-z]+)+")
PATH_PARAMETER = re.compile(r"<[^>]+>")

UNAUTHENTICATED = "No valid bearer token or API key (`unauthenticated`, `invalid_token`)"
CLIENT_REFUSED = "A client application's key on a route for people (`client_not_allowed`)"
NOT_FOUND = "No such id, or not visible to the caller (`not_found` for an id out of range)"
BAD_BODY = "The body is not JSON, or nests too deep (`malformed_request`, `json_too_deep`)"
TOO_LARGE = "The body is larger than AUTHZ_MAX_BODY_BYTES (`body_too_large`)"
URI_TOO_LONG = "The request line (path and query string) is too long (`uri_too_long`)"
HEADERS_TOO_LARGE = "Too many header fields, or one too large (`headers_too_large`)"
INVALID = "Some field is missing or invalid (`validation_failed`): `errors` names each"


def example_of(schema: Schema | type[Schema], *, loading: bool = False) -> Any:
    """The example a schema (class or instance, `many` or not) documents, if any;
    `loading`: without the fields the schema only writes (ids of a created row)."""
    cls: type[Schema] = schema if isinstance(schema, type) else type(schema)
    example = getattr(cls, "example", None)
    if example is not None and loading:
        written = {n for n, f in cls._declared_fields.items() if f.dump_only}
        example = {k: v for k, v in example.items() if k not in written}
    if example is None or isinstance(schema, type):
        return example
    return [example] if schema.many else example


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = Parser()

    def operation(self, operation_id: str) -> Callable[[View], View]:
        """Name the operation (OpenAPI `operationId`)."""
        if not OPERATION_ID.fullmatch(operation_id):
            raise ValueError(f"operationId {operation_id!r} is not snake_case verb_noun")
        name: Callable[[View], View] = self.doc(operationId=operation_id)
        return name

    def problem(self, status: int, description: str) -> Callable[[View], View]:
        """Declare an error answer: a problem (application/problem+json).
        Documentation only: flask-smorest's alt_response wraps the view in a
        layer that does nothing but call it (through current_app.ensure_sync)
        on every request; its documentation is kept and the layer dropped."""
        declare: Callable[[View], View] = self.alt_response(
            status, schema=Problem, content_type=PROBLEM_TYPE, description=description
        )

        def decorator(view: View) -> View:
            view._apidoc = declare(view)._apidoc  # type: ignore[attr-defined]  # noqa: SLF001
            return view

        return decorator

    def arguments(
        self, schema: Schema | type[Schema], *, location: str = "json", **kwargs: Any
    ) -> Callable[[View], View]:
        """flask-smorest's arguments, with the errors reading them can give and
        the schema's example of a body."""
        if (
            location == "json"
            and "example" not in kwargs
            and (example := example_of(schema, loading=True)) is not None
        ):
            kwargs["example"] = example
        read: Callable[[View], View] = super().arguments(schema, location=location, **kwargs)
        invalid = kwargs.get("error_status_code", 422)
        errors = {invalid: INVALID}
        if location == "json":
            errors = {400: BAD_BODY, 413: TOO_LARGE, **errors}

        def decorator(view: View) -> View:
            view = read(view)
            for status, description in errors.items():
                view = self.problem(status, description)(view)
            return view

        return decorator

    def response(
        self, status_code: int, schema: Schema | type[Schema] | None = None, **kwargs: Any
    ) -> Callable[[View], View]:
        """flask-smorest's response, with the schema's example."""
        if (
            schema is not None
            and "example" not in kwargs
            and (example := example_of(schema)) is not None
        ):
            kwargs["example"] = example
        respond: Callable[[View], View] = super().response(status_code, schema, **kwargs)
        return respond

    def add_url_rule(
        self,
        rule: str,
        endpoint: str | None = None,
        view_func: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(view_func, type) and issubclass(view_func, MethodView):
            for method in view_func.methods or ():
                handler = getattr(view_func, method.lower())
                setattr(view_func, method.lower(), self._declared(rule, view_func, method, handler))
        elif view_func is not None:
            for method in kwargs.get("methods", ("GET",)):
                view_func = self._declared(rule, view_func, method, view_func)
        super().add_url_rule(rule, endpoint, view_func, **kwargs)

    def _declared(self, rule: str, view: Any, method: str, handler: View) -> View:
        """`handler` with what its route and marks say it can answer."""
        if has_mark(view, method, PUBLIC):
            # A public view that also serves logged-in callers says so itself
            # (doc(security=...)), in flask-smorest's record of the view's doc.
            if "security" not in getattr(handler, "_apidoc", {}).get("manual_doc", {}):
                handler = self.doc(security=[])(handler)
        else:
            handler = self.problem(401, UNAUTHENTICATED)(handler)
            if not has_mark(view, method, FOR_CLIENTS):
                handler = self.problem(403, CLIENT_REFUSED)(handler)
        if PATH_PARAMETER.search(rule):
            handler = self.problem(404, NOT_FOUND)(handler)
        handler = self.problem(414, URI_TOO_LONG)(handler)
        return self.problem(431, HEADERS_TOO_LARGE)(handler)
