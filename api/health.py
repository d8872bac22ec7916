"""Liveness and readiness probes (public)."""

from __future__ import annotations

from authz.db import probe_database, schema_status

from . import schemas as s
from .blueprint import Blueprint
from .errors import problem
from .identity import public, runtime

blp = Blueprint("health", __name__, url_prefix="/health", description="Probes")


@blp.route("/live")
@blp.operation("check_liveness")
@public
@blp.response(200, s.HealthSchema)
def live():
    """The process answers."""
    return {"status": "ok"}


@blp.route("/ready")
@blp.operation("check_readiness")
@public
@blp.response(200, s.HealthSchema)
@blp.problem(
    503,
    "The database does not answer (`database_unavailable`), or its schema is "
    "behind the code (`schema_outdated`)",
)
def ready():
    """The database answers within AUTHZ_READY_TIMEOUT_MS - the policy revision,
    which every decision reads, included - and its schema is one this release
    runs on: at its latest migration, or newer and declared compatible with it
    (rolling deploys)."""
    rt = runtime()
    try:
        probe_database(rt.decider.db_engine, rt.settings.ready_timeout_ms)
        status = schema_status(rt.engine)
    except Exception:  # noqa: BLE001 - any failure to reach the database means not ready
        return problem(503, "database_unavailable", "Not ready", "The database does not answer.")
    if not status.usable:
        return problem(503, status.code, "Not ready", status.detail)
    return {"status": "ok"}
