"""The service as the in-process benchmarks build it: settings for a
throw-away run (cheap argon2, no mail thread, no decision log) and a migrated
application."""

from __future__ import annotations

import tempfile
from typing import Any

from flask import Flask

from api import create_app
from authz.config import load_settings
from authz.db import make_engine, upgrade


def bench_settings(database_url: str, name: str, **more: Any) -> dict[str, Any]:
    """Settings of a benchmark's own service on `database_url` (`name`: the
    prefix of its temporary var directory)."""
    return {
        "database_url": database_url,
        "var_dir": tempfile.mkdtemp(prefix=f"bench-{name}-"),
        "mail_background": False,
        "decision_log": "off",
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8,
        "argon2_parallelism": 1,
        **more,
    }


def migrated_app(settings: dict[str, Any]) -> Flask:
    """The application on a database migrated to the head first."""
    engine = make_engine(load_settings(settings))
    upgrade(engine)
    engine.dispose()
    return create_app(settings)
