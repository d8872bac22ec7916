"""Every error leaves as application/problem+json (RFC 9457) with a stable `code`.

Domain errors map to HTTP here and only here. Unexpected exceptions become a
generic 500 problem: the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import http
import logging
from typing import Any

from flask import Flask, Response, g, json, request
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from authz import errors as domain

from .schemas.common import Problem

log = logging.getLogger("authz.api")

PROBLEM_TYPE = "application/problem+json"

STATUS_OF = {
    domain.Invalid: 422,
    domain.Unauthenticated: 401,
    domain.Forbidden: 403,
    domain.NotFound: 404,
    domain.Conflict: 409,
    domain.Gone: 410,
    domain.TooManyAttempts: 429,
    domain.Unavailable: 503,
}

HTTP_CODES = {
    400: "malformed_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    413: "body_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_attempts",
    431: "headers_too_large",
    500: "internal_error",
    503: "unavailable",
}


def problem_document(
    status: int,
    code: str,
    title: str,
    detail: str | None,
    instance: str,
    request_id: str | None,
    **extra: Any,
) -> dict[str, Any]:
    """The members of a problem answer, in the order they are written."""
    body: dict[str, Any] = {
        "type": f"urn:authz:problem:{code}",
        "title": title,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    body["instance"] = instance
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = problem_document(
        status, code, title, detail, request.path, getattr(g, "request_id", None), **extra
    )
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def domain_status(error: domain.DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def domain_headers(error: domain.DomainError) -> dict[str, str]:
    """The headers a domain error's answer carries besides its body."""
    headers = {}
    if isinstance(error, domain.TooManyAttempts):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, domain.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="authz"'
    return headers


def handle_domain_error(error: domain.DomainError) -> Response:
    return problem(
        domain_status(error),
        error.code,
        error.title,
        error.detail,
        headers=domain_headers(error),
        **error.extra,
    )


def handle_database_down(error: OperationalError) -> Response:
    """The database cannot be reached or used: nothing was decided or changed."""
    log.error("database unavailable on %s %s: %s", request.method, request.path, error)
    return problem(
        503,
        "database_unavailable",
        "Service unavailable",
        "The database cannot be reached; nothing was done. Retry later.",
        headers={"Retry-After": "5"},
    )


def handle_unexpected(error: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=error)
    return problem(
        500,
        "internal_error",
        "Internal error",
        "The server failed to answer; the error is logged with this request id.",
    )


class ProblemApi(Api):
    """flask-smorest's Api, with HTTP errors (including webargs' 422) as problems,
    and documented as such."""

    ERROR_SCHEMA = Problem

    def _register_responses(self) -> None:
        """The error responses flask-smorest declares by itself (`default`, and
        422 of webargs) are problems too, as the service answers them."""
        statuses = [(s.name, s.phrase) for s in http.HTTPStatus if s >= 400]
        for name, description in [*statuses, ("DEFAULT_ERROR", "Unexpected error (500)")]:
            response = {"description": description, "schema": self.ERROR_SCHEMA}
            prepare_response(response, self.spec, PROBLEM_TYPE)
            self.spec.components.response(name, response, lazy=True)

    def handle_http_exception(self, error: HTTPException) -> Response:
        status = error.code or 500
        if status >= 500:
            original = getattr(error, "original_exception", None)
            if original is not None:
                return handle_unexpected(original)
        data = getattr(error, "data", None) or {}
        messages = data.get("messages")
        errors = None
        if messages:
            # webargs nests by location ("json", "query"…); keep the field names.
            errors = {}
            for location, fields in messages.items():
                if isinstance(fields, dict):
                    errors.update(fields)
                else:
                    errors[location] = fields
        code = getattr(error, "problem_code", None) or HTTP_CODES.get(status, "http_error")
        title = error.name
        detail = error.description if not errors else "Some fields are missing or invalid."
        if status == 413:
            detail = "The request body is larger than this service accepts."
        headers = {}
        valid_methods = getattr(error, "valid_methods", None)
        if status == 405 and valid_methods:
            headers["Allow"] = ", ".join(valid_methods)
        return problem(status, code, title, detail, headers=headers, errors=errors)


def register(app: Flask) -> None:
    app.register_error_handler(domain.DomainError, handle_domain_error)
    app.register_error_handler(OperationalError, handle_database_down)
    app.register_error_handler(Exception, handle_unexpected)
