"""What an operator watches: GET /metrics, the HTTP metrics and log context of
every request, and its access record in JSON logs (docs/operations.md).

GET /metrics is outside the OpenAPI contract (it is Prometheus's), and outside
the bearer-token scheme of the API: who may read it is AUTHZ_METRICS_ACCESS,
`loopback` (callers on the host itself: a sidecar or node agent scrapes it),
`token` (a bearer token whose SHA-256 is AUTHZ_METRICS_TOKEN_SHA256, compared
in constant time) or `off`. A refused scrape is a 404 problem: the route's
existence is not advertised.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import os
import time

from flask import Blueprint, Flask, Response, g, request
from sqlalchemy import func, select

from authz import logs, metrics, tracing
from models import OutboxMail, PolicyRevision, utcnow

from .errors import problem
from .identity import runtime

access_log = logging.getLogger("authz.access")
# Routes whose access records are DEBUG, not INFO: probes and scrapes.
QUIET_PREFIXES = ("/health/", "/metrics")

blp = Blueprint("metrics", __name__)


def _may_scrape() -> bool:
    settings = runtime().settings
    if settings.metrics_access == "loopback":
        try:
            return ipaddress.ip_address(request.remote_addr or "").is_loopback
        except ValueError:
            return False
    if settings.metrics_access == "token":
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        digest = hashlib.sha256(value.strip().encode()).hexdigest()
        return scheme.lower() == "bearer" and hmac.compare_digest(
            digest, settings.metrics_token_sha256
        )
    return False


def _database_facts() -> metrics.DatabaseFacts:
    with runtime().read_sessions() as session:
        revision = session.scalar(select(PolicyRevision.revision).where(PolicyRevision.id == 1))
        pending, oldest = session.execute(
            select(func.count(), func.min(OutboxMail.created_at)).where(
                OutboxMail.status == "pending"
            )
        ).one()
    age = 0.0
    if oldest is not None:
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=dt.UTC)
        age = max(0.0, (utcnow() - oldest).total_seconds())
    return metrics.DatabaseFacts(int(revision or 0), int(pending), age)


@blp.route("/metrics")
def scrape():
    if not _may_scrape():
        return problem(404, "not_found", "Not found", "No such route.")
    body, content_type = metrics.render(_database_facts)
    return Response(body, content_type=content_type)


def _start() -> None:
    g.started = time.perf_counter()
    route = request.url_rule.rule if request.url_rule is not None else None
    if tracing.TRACER is not None:
        g.trace_span = tracing.request_started(request.method, route, request.headers)
    g.log_token = logs.serving(method=request.method, route=route)


def _identified() -> None:
    """After identity's hooks: the request id and the caller are known."""
    caller = None
    if g.get("client_id") is not None:
        caller = f"client:{g.client_id}"
    elif g.get("user_id") is not None:
        caller = f"user:{g.user_id}"
    logs.annotate(request_id=g.get("request_id"), caller=caller)


def _finish(response: Response) -> Response:
    started = g.get("started")
    if started is None:
        return response
    seconds = time.perf_counter() - started
    route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    if tracing.TRACER is not None and "trace_span" in g:
        tracing.request_answered(g.trace_span, response.status_code)
    metrics.get().http_answered(request.method, route, response.status_code, seconds)
    if runtime().settings.log_format == "json":
        # Identity may have refused the request before _identified ran.
        _identified()
        level = logging.DEBUG if request.path.startswith(QUIET_PREFIXES) else logging.INFO
        access_log.log(
            level,
            "%s %s %s",
            request.method,
            route,
            response.status_code,
            extra={
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 3),
                "remote": request.remote_addr,
                "pid": os.getpid(),
            },
        )
    return response


def _forget(exc: BaseException | None) -> None:
    token = g.pop("log_token", None)
    if token is not None:
        logs.done(token)
    span = g.pop("trace_span", None)
    if span is not None:
        span.end(exc)


def register(app: Flask) -> None:
    """Call after identity.register: the timer starts before every other hook,
    the context is completed after identity's, the record is written last."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.before_request(_identified)
    app.after_request_funcs.setdefault(None, []).insert(0, _finish)
    app.teardown_request(_forget)
    app.register_blueprint(blp)
