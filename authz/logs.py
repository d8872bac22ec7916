"""Log lines of the service: text or JSON (AUTHZ_LOG_FORMAT), with the request's
context (docs/operations.md, "Logs").

JSON: one object per line, keys `time` (UTC, ISO 8601, milliseconds), `level`,
`logger`, `message`, then what is known of the request being served
(`request_id`, `caller`, `method`, `route`) and what the record itself carries
(`status`, `duration_ms`, `pid`...); an exception's stack is the `exception`
member of its record's one line. Text: the format the service always had, with
the request id appended when there is one.

What is logged never holds a secret: messages name ids, never tokens, keys,
passwords or links (tests/test_logging.py runs a broad session through a check).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import traceback
from contextvars import ContextVar, Token
from typing import Any

from . import tracing

# The request being served: request_id, caller ("user:7", "client:3"), method, route.
_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("authz_log_context", default=None)

# Members of a record (passed with `extra=`) copied into a JSON line.
FIELDS = ("status", "duration_ms", "remote", "pid", "decision")
# Loggers quiet at INFO: Alembic's two lines on every schema check (each
# readiness probe runs one), and Casbin's dump of the model at every load.
QUIET = ("alembic.runtime.migration", "casbin")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_MARK = "_authz_handler"


def serving(**context: Any) -> Token[dict[str, Any] | None]:
    """Called as a request starts; returns the token for `done`."""
    return _CONTEXT.set({k: v for k, v in context.items() if v is not None})


def annotate(**context: Any) -> None:
    """Add to the context of the request being served (e.g. its caller, once known)."""
    current = _CONTEXT.get()
    if current is not None:
        current.update({k: v for k, v in context.items() if v is not None})


def done(token: Token[dict[str, Any] | None]) -> None:
    _CONTEXT.reset(token)


def context() -> dict[str, Any]:
    """The context of the request being served (empty outside one)."""
    return _CONTEXT.get() or {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(context())
        if tracing.TRACER is not None and (ids := tracing.current_ids()) is not None:
            out["trace_id"], out["span_id"] = ids
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The readable line, with the request id when serving one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = context().get("request_id")
        if request_id:
            line = f"{line} request_id={request_id}"
        if tracing.TRACER is not None and (ids := tracing.current_ids()) is not None:
            line = f"{line} trace_id={ids[0]} span_id={ids[1]}"
        return line


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(log_format: str, level: str) -> None:
    """The root logger writes to standard error in `log_format` at `level`; one
    handler of ours, however often this is called. Alembic's per-check lines
    are shown at DEBUG only."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")


def gunicorn_logconfig(log_format: str, level: str) -> dict[str, Any] | None:
    """gunicorn's logging (its `logconfig_dict`) for `log_format`: None for text
    (gunicorn's own lines); for JSON, gunicorn's error log in JSON on standard
    output and no access log of its own (each worker writes one JSON record per
    request, with its caller and route: authz.access)."""
    if log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": level, "handlers": []},
        "loggers": {
            "gunicorn.error": {
                "level": level,
                "handlers": ["json"],
                "propagate": False,
                "qualname": "gunicorn.error",
            },
            "gunicorn.access": {
                "level": "INFO",
                "handlers": [],
                "propagate": False,
                "qualname": "gunicorn.access",
            },
        },
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "formatters": {"json": {"()": "authz.logs.JsonFormatter"}},
    }


class QuietProbes(logging.Filter):
    """Drop gunicorn's access lines of health probes and scrapes unless at DEBUG."""

    PREFIXES = ("/health/", "/metrics")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict) and str(args.get("U", "")).startswith(self.PREFIXES):
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def quiet_probes() -> None:
    access = logging.getLogger("gunicorn.access")
    if not any(isinstance(f, QuietProbes) for f in access.filters):
        access.addFilter(QuietProbes())
