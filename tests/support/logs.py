"""The service's JSON logs in tests: an application logging as JSON, and the
lines logged meanwhile."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask

from api import create_app
from authz import logs
from authz.runtime import close_runtime
from tests.support.backend import app_settings


def json_app(database_url: str, var: Path) -> Flask:
    """The service with AUTHZ_LOG_FORMAT=json (close it with closed())."""
    app = create_app({**app_settings(database_url, var), "log_format": "json"})
    app.config["TESTING"] = True
    return app


def closed(app: Flask) -> None:
    """Close `app`'s runtime and put the logs back in text."""
    close_runtime(app.extensions["authz"])
    logs.configure("text", "INFO")


@contextmanager
def json_lines(level: int = logging.DEBUG) -> Iterator[io.StringIO]:
    """Everything logged meanwhile at `level` or above, in the JSON format."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
