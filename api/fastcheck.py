"""POST /v1/checks answered below Flask's dispatch, when it can be answered
exactly as the Flask route would.

A single check is the request other systems send most, and most of its cost
was the machinery around the decision: Flask's request and app contexts, the
before/after/teardown hooks, flask-smorest's layers (docs/performance.md,
"HTTP checks: the plumbing"). This WSGI middleware (installed the way Flask
documents, by wrapping `app.wsgi_app`) answers the common case itself:

- `POST /v1/checks` with a JSON body (`Content-Type: application/json`) no
  larger than AUTHZ_MAX_BODY_BYTES that is an exactly valid check (the body
  CheckSchema reads without marshmallow: api/schemas/checks.py exact_check);
- a bearer credential this worker's identity cache knows at the identity
  revision read now (the same poll the decision then reuses: a revoked key or
  token, a logged-out token or a deactivated account is refused at once, by
  the Flask route, because the cache misses);
- a client application, or a person asking about themself;
- no tracing (tracing.TRACER unset).

It then does what the route and its hooks do, in the same order and with the
same functions: the request id, the log context, the identity, the decision
(authz.engine.checks.check, which records it in the decision log and the
decision metrics), the answer (DecisionSchema's exact dump, Flask's JSON
writer), the headers every answer carries, the HTTP metrics and the access
record. An error of the decision (the store unreadable, `at_least_revision`
not committed) is the same problem document as the route's.

Any other request — another path or method, another body, an unknown or
uncached credential, a refusal of the caller — goes to Flask untouched (its
body given back), before anything was counted or recorded: what is accepted,
every refusal and every error stay the Flask route's, and nothing is counted
twice. tests/test_fast_checks.py sends the same requests to both and compares
status, headers and bodies byte for byte.
"""

from __future__ import annotations

import io
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from webargs.core import parse_json
from werkzeug.http import HTTP_STATUS_CODES

from authz import errors as domain
from authz import logs, metrics, tracing
from authz.engine import checks
from authz.engine.checks import Caller
from authz.engine.decisions import Question, answering_since, done_answering
from authz.runtime import Runtime
from authz.security import digest
from models import utcnow

from . import errors
from .identity import REQUEST_ID_RE
from .observe import access_log
from .schemas import DecisionSchema
from .schemas.checks import exact_check

PATH = "/v1/checks"
JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
log = logging.getLogger("authz.api")


class FastChecks:
    """WSGI middleware: `app.wsgi_app = FastChecks(app)` (see the module docstring)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.flask: WSGIApp = app.wsgi_app
        self.rt: Runtime = app.extensions["authz"]
        self._dump = DecisionSchema().dump
        self._dumps = app.json.dumps
        self._max_body = int(app.config["MAX_CONTENT_LENGTH"] or 0)
        # How many requests each way (tests and the bench read them).
        self.answered = 0
        self.passed = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if (
            environ.get("PATH_INFO") != PATH
            or environ.get("REQUEST_METHOD") != "POST"
            or tracing.TRACER is not None
        ):
            return self.flask(environ, start_response)
        arrived = time.monotonic()
        started = time.perf_counter()
        body = self._body(environ)
        if body is None:
            self.passed += 1
            return self.flask(environ, start_response)
        arrival = answering_since(arrived)
        try:
            answer = self._answer(environ, body, started)
        finally:
            done_answering(arrival)
        if answer is None:
            self.passed += 1
            environ["wsgi.input"] = io.BytesIO(body)
            return self.flask(environ, start_response)
        self.answered += 1
        status, payload, headers = answer
        start_response(status, headers)
        return [payload]

    def _body(self, environ: dict[str, Any]) -> bytes | None:
        """The request's body when it may be a check this path answers (JSON, of
        a declared length within the limit), else None."""
        if environ.get("CONTENT_TYPE", "").lower() not in JSON_TYPES:
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= self._max_body or environ.get("HTTP_TRANSFER_ENCODING"):
            return None
        body: bytes = environ["wsgi.input"].read(length)
        return body

    def _answer(
        self, environ: dict[str, Any], body: bytes, started: float
    ) -> tuple[str, bytes, list[tuple[str, str]]] | None:
        """The complete answer (status line, body, headers), or None: Flask answers."""
        scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        token = value.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            data = parse_json(body)  # webargs' own reading (strict UTF-8, then JSON)
        except ValueError:
            return None
        check = exact_check(data)
        if check is None:
            return None
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if REQUEST_ID_RE.match(incoming) else str(uuid.uuid4())
        rt = self.rt
        context = logs.serving(method="POST", route=PATH)
        try:
            try:
                identity_revision = rt.decider.identity_revision()
            except domain.DomainError as exc:
                # The store is unreadable (the poll waited its timeout, fail
                # closed): the route's answer now, rather than a second wait in it.
                logs.annotate(request_id=request_id)
                return self._send(environ, started, request_id, *self._problem(exc, request_id))
            found = rt.identities.get(digest(token), identity_revision, utcnow())
            if found is None:
                return None
            if found.client_id is None and found.user_id != check["user_id"]:
                return None  # a person asking about someone else: the route refuses
            caller = Caller(user_id=found.user_id, client_id=found.client_id)
            logs.annotate(
                request_id=request_id,
                caller=f"client:{found.client_id}"
                if found.client_id is not None
                else f"user:{found.user_id}",
            )
            return self._send(
                environ, started, request_id, *self._decide(check, caller, request_id)
            )
        finally:
            logs.done(context)

    def _send(
        self,
        environ: dict[str, Any],
        started: float,
        request_id: str,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str],
    ) -> tuple[str, bytes, list[tuple[str, str]]]:
        """The answer with the headers every answer carries (api/identity.py's
        _echo_request_id), counted and logged as api/observe.py's _finish does."""
        headers["X-Request-ID"] = request_id
        headers["Cache-Control"] = "no-store"
        headers["X-Content-Type-Options"] = "nosniff"
        self._observed(environ, status, time.perf_counter() - started)
        return (
            f"{status} {HTTP_STATUS_CODES[status].upper()}",
            payload,
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(payload))),
                *headers.items(),
            ],
        )

    def _problem(
        self, exc: domain.DomainError, request_id: str
    ) -> tuple[int, bytes, str, dict[str, str]]:
        """api/errors.py's handle_domain_error, for this path."""
        status = errors.domain_status(exc)
        document = errors.problem_document(
            status, exc.code, exc.title, exc.detail, PATH, request_id, **exc.extra
        )
        return (
            status,
            self._dumps(document).encode(),
            errors.PROBLEM_TYPE,
            errors.domain_headers(exc),
        )

    def _decide(
        self, check: dict[str, Any], caller: Caller, request_id: str
    ) -> tuple[int, bytes, str, dict[str, str]]:
        """The route's view and its error handlers: (status, body, type, headers)."""
        explain = check["explain"]
        try:
            decision = checks.check(
                self.rt,
                caller,
                Question(
                    check["user_id"],
                    check["structure_id"],
                    check["space"],
                    check["action"],
                    check["service"],
                ),
                at_least_revision=check.get("at_least_revision"),
                explain=explain,
            )
        except domain.DomainError as exc:
            return self._problem(exc, request_id)
        except Exception:  # the route's handle_unexpected: logged, a 500 problem
            log.exception("unhandled error on POST %s", PATH)
            document = errors.problem_document(
                500,
                "internal_error",
                "Internal error",
                "The server failed to answer; the error is logged with this request id.",
                PATH,
                request_id,
            )
            return 500, self._dumps(document).encode(), errors.PROBLEM_TYPE, {}
        answer = self._dump(decision.as_dict(explain=explain))
        payload = (self._dumps(answer, separators=(",", ":")) + "\n").encode()
        return 200, payload, "application/json", {}

    def _observed(self, environ: dict[str, Any], status: int, seconds: float) -> None:
        """The HTTP metrics and access record of api/observe.py's _finish."""
        metrics.get().http_answered("POST", PATH, status, seconds)
        if self.rt.settings.log_format == "json":
            access_log.log(
                logging.INFO,
                "%s %s %s",
                "POST",
                PATH,
                status,
                extra={
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "remote": environ.get("REMOTE_ADDR"),
                    "pid": os.getpid(),
                },
            )
