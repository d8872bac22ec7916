"""Everything a workflow needs, built once per process from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from . import db
from . import search  # noqa: F401  (registers the listeners that keep search keys)
from .config import Settings
from .decisions import Decider
from .policy import PolicyEngine, Policies, load_policies, sync_space_catalogue
from .security import Hasher


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    # Sessions that only read (on SQLite: no write lock at BEGIN).
    read_sessions: sessionmaker[Session]
    hasher: Hasher
    policies: Policies
    management: PolicyEngine
    decider: Decider
    # Background outbox sender of this process (None: mail is sent by `authz mail`).
    dispatcher: Any = None


def close_runtime(rt: Runtime) -> None:
    """Release the database connections of `rt` (both engines on SQLite)."""
    rt.decider.close()
    rt.engine.dispose()
    rt.decider.db_engine.dispose()


def build_runtime(settings: Settings, *, engine: Engine | None = None) -> Runtime:
    engine = engine or db.make_engine(settings)
    policies = load_policies(settings.policy_dir)
    policy_engine = PolicyEngine(policies)
    reads = db.make_engine(settings, for_reads=True) if engine.dialect.name == "sqlite" else engine
    decider = Decider(policy_engine, reads, check_interval=settings.decision_check_interval_seconds)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=db.make_session_factory(engine),
        read_sessions=db.make_session_factory(reads),
        hasher=Hasher(settings),
        policies=policies,
        management=policy_engine,
        decider=decider,
    )


def sync_catalogue(rt: Runtime) -> None:
    """Copy policies/spaces.yaml into the database (after migrations). Under the
    schema lock: workers and instances starting together would otherwise both
    insert a new space."""
    with rt.sessions.begin() as session:
        db.lock_schema(session.connection())
        sync_space_catalogue(session, rt.policies)
