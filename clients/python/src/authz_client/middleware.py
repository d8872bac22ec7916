"""Enforcement: a Flask decorator and a WSGI middleware that ask the service
and answer 403 application/problem+json when the decision is not an allow
(denied, or no decision could be had: fail-closed)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

from .client import AuthzClient, Decision, Question

PROBLEM_TYPE = "application/problem+json"

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def problem_body(decision: Decision) -> bytes:
    """The 403 problem of a refused request."""
    unavailable = decision.error is not None
    return json.dumps(
        {
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "code": "authorization_unavailable" if unavailable else "forbidden",
            "detail": "No decision could be had: access is refused."
            if unavailable
            else (decision.reason or "Not allowed."),
        }
    ).encode()


def require(
    client: AuthzClient,
    question: Callable[..., Question],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Flask view decorator: `question(**view_args)` builds the question from
    the view's arguments (and flask.g, request...); the view runs only when the
    service allows it, otherwise the answer is a 403 problem.

        @app.get("/structures/<int:structure_id>/invoices")
        @require(authz, lambda structure_id: Question(g.user_id, structure_id,
                                                      "issued_invoices", "consult"))
        def invoices(structure_id): ...
    """
    from flask import Response  # noqa: PLC0415 - Flask is needed only by the decorator's users

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                asked = question(**kwargs)
            except Exception as exc:  # noqa: BLE001 - a question that cannot be built is a refusal
                decision = Decision.failed(f"question not built: {exc.__class__.__name__}")
            else:
                decision = client.check(
                    asked.user_id,
                    asked.structure_id,
                    asked.space,
                    asked.action,
                    service=asked.service,
                )
            if not decision.allowed:
                return Response(problem_body(decision), status=403, mimetype=PROBLEM_TYPE)
            return view(*args, **kwargs)

        return wrapper

    return decorator


class AuthzMiddleware:
    """WSGI middleware: `question(environ)` returns the Question a request needs
    allowed, or None for a request it does not protect (e.g. health checks).
    Any error building the question refuses the request."""

    def __init__(
        self,
        app: WSGIApp,
        client: AuthzClient,
        question: Callable[[Environ], Question | None],
    ) -> None:
        self.app = app
        self.client = client
        self.question = question

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            asked = self.question(environ)
        except Exception as exc:  # noqa: BLE001 - a question that cannot be built is a refusal
            decision = Decision.failed(f"question not built: {exc.__class__.__name__}")
        else:
            if asked is None:
                return self.app(environ, start_response)
            decision = self.client.check(
                asked.user_id,
                asked.structure_id,
                asked.space,
                asked.action,
                service=asked.service,
            )
        if decision.allowed:
            return self.app(environ, start_response)
        body = problem_body(decision)
        start_response(
            "403 Forbidden",
            [("Content-Type", PROBLEM_TYPE), ("Content-Length", str(len(body)))],
        )
        return [body]
