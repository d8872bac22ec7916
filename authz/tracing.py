"""Tracing with OpenTelemetry, optional (docs/operations.md, "Tracing").

Off unless the `otel` extra is installed AND the standard OpenTelemetry
environment asks for traces: OTEL_TRACES_EXPORTER names an exporter (`otlp`,
`console`; `none` is off), or, without it, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
or OTEL_EXPORTER_OTLP_ENDPOINT is set (OTLP over HTTP/protobuf);
OTEL_SDK_DISABLED=true wins over both. The SDK reads the rest itself
(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, the
exporter's endpoint, headers and timeout, OTEL_BSP_*, span limits).

When on, a request is a span named by its method and route template, with
its status; a decision request (check, batch, permissions, access, AuthZEN)
a child span `authz.decide <api>` with its counts and, for checks and
AuthZEN, one event per decision (result, rule or reason, revision, policy
version: never who asked about whom); a database statement a child span
(`db <verb>`, the statement's text with its placeholders, never its
values); log lines carry `trace_id` and `span_id`.

When off, `TRACER` is None: every hook of the hot path is one comparison,
opentelemetry is never imported, and log lines have no new field.

Set up per process (`configure`), in each gunicorn worker after the fork
(cli/serve.py's post_fork, and create_app, which runs in the worker): the
SDK's batch exporter is a thread, which a fork does not copy.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger("authz.tracing")

# The tracer when tracing is on in this process; None: off.
TRACER: Any = None
_CONFIGURED_PID: int | None = None
_DB_SPAN = "_authz_span"


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces (see the module's docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER")
    if exporters is not None:
        return any(name.strip() not in ("", "none") for name in exporters.lower().split(","))
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on in this process when the environment asks for it and the
    SDK is installed; once per process (a forked worker sets up its own).
    Whether tracing is on."""
    global _CONFIGURED_PID  # noqa: PLW0603  (one provider per process)
    environ = os.environ if environ is None else environ
    if os.getpid() == _CONFIGURED_PID or not wanted(environ):
        return TRACER is not None
    _CONFIGURED_PID = os.getpid()
    try:
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415  (optional extra)
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    except ImportError:
        log.warning(
            "OTEL_* settings ask for traces but OpenTelemetry is not installed "
            "(pip install 'authz-service[otel]'): no tracing"
        )
        return False
    exporters = [
        exporter
        for name in (environ.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(",")
        if (exporter := _exporter(name.strip())) is not None
    ]
    if not exporters:
        return False
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES,
    # which override this default name.
    provider = TracerProvider(resource=Resource.create({"service.name": "authz-service"}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    atexit.register(provider.shutdown)
    log.info("tracing on: %s", ", ".join(type(e).__name__ for e in exporters))
    return True


def _exporter(name: str) -> Any:
    try:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter,
            )

            return OTLPSpanExporter()
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

            return ConsoleSpanExporter()
    except ImportError:
        log.warning("OTEL_TRACES_EXPORTER=%s: its package is not installed", name)
        return None
    if name not in ("", "none"):
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console)", name)
    return None


def install(provider: Any) -> None:
    """Trace with `provider` (an SDK TracerProvider) in this process: what
    `configure` does with the exporters the environment names, and what tests
    do with an in-memory exporter."""
    from opentelemetry import trace  # noqa: PLC0415  (optional extra)

    global TRACER  # noqa: PLW0603  (the switch every hook reads)
    TRACER = trace.get_tracer("authz", tracer_provider=provider)


def uninstall() -> None:
    """Tracing off again (tests)."""
    global TRACER, _CONFIGURED_PID  # noqa: PLW0603
    TRACER = None
    _CONFIGURED_PID = None


# --- spans: called only when TRACER is not None --------------------------------


class Active:
    """A span made current until `end` (a request, a decision request)."""

    __slots__ = ("span", "token")

    def __init__(
        self, name: str, kind: str = "INTERNAL", parent: Any = None, **attributes: Any
    ) -> None:
        """`parent`: the context the span is a child of (default: the current one)."""
        from opentelemetry import context, trace  # noqa: PLC0415  (optional extra)

        self.span = TRACER.start_span(
            name, context=parent, kind=getattr(trace.SpanKind, kind), attributes=attributes
        )
        self.token = context.attach(trace.set_span_in_context(self.span))

    def set(self, **attributes: Any) -> None:
        self.span.set_attributes(attributes)

    def end(self, error: BaseException | None = None) -> None:
        from opentelemetry import context  # noqa: PLC0415  (optional extra)
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        if error is not None:
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        try:
            context.detach(self.token)
        finally:
            self.span.end()


def request_started(method: str, route: str | None, headers: Any) -> Active:
    """The span of an HTTP request, child of the caller's (W3C traceparent) if any."""
    from opentelemetry import propagate  # noqa: PLC0415  (optional extra)

    return Active(
        f"{method} {route or '<unmatched>'}",
        "SERVER",
        propagate.extract(headers),
        **{"http.request.method": method, "http.route": route or "<unmatched>"},
    )


def request_answered(active: Active, status: int) -> None:
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415  (optional extra)

    active.set(**{"http.response.status_code": status})
    if status >= 500:
        active.span.set_status(Status(StatusCode.ERROR))


def decided(decisions: Sequence[Any], api: str) -> None:
    """One event per decision on the current span (the decision request's)."""
    from opentelemetry import trace  # noqa: PLC0415  (optional extra)

    span = trace.get_current_span()
    if not span.is_recording():
        return
    for d in decisions:
        if not hasattr(d, "allowed"):
            continue
        attributes = {
            "authz.api": api,
            "authz.result": "allowed" if d.allowed else "denied",
            "authz.revision": d.revision,
        }
        if d.policy_version is not None:
            attributes["authz.policy_version"] = d.policy_version
        because = d.rule if d.allowed else d.reason
        if because is not None:
            attributes["authz.rule" if d.allowed else "authz.reason"] = because
        span.add_event("authz.decision", attributes)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, as hex, or None outside one."""
    from opentelemetry import trace  # noqa: PLC0415  (optional extra)

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def instrument(engine: Any) -> None:
    """Database statements of `engine` become spans, children of the current
    span (statements outside a traced request, e.g. the decision log's
    writer, are not traced)."""
    from opentelemetry import trace  # noqa: PLC0415  (optional extra)
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415
    from sqlalchemy import event  # noqa: PLC0415

    system = engine.dialect.name

    def before(
        _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, many: bool
    ) -> None:
        if TRACER is None or not trace.get_current_span().is_recording():
            return
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        span = TRACER.start_span(
            f"db {verb}",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "db.system.name": system,
                "db.operation.name": verb,
                "db.query.text": statement[:2000],
                "db.executemany": many,
            },
        )
        setattr(context, _DB_SPAN, span)

    def after(
        _conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        span = getattr(context, _DB_SPAN, None)
        if span is not None:
            setattr(context, _DB_SPAN, None)
            span.end()

    def failed(exception_context: Any) -> None:
        context = exception_context.execution_context
        span = getattr(context, _DB_SPAN, None) if context is not None else None
        if span is not None:
            setattr(context, _DB_SPAN, None)
            # The error's type only: its text holds the statement's parameters.
            span.set_status(
                Status(StatusCode.ERROR, type(exception_context.original_exception).__name__)
            )
            span.end()

    if getattr(engine, "_authz_traced", False):
        return
    engine._authz_traced = True  # noqa: SLF001  (a mark on our own engine)
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)
