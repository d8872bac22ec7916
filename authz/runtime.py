"""Everything a workflow needs, built once per process from the settings."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from . import (
    db,
    logins,  # noqa: F401 - imported for its effect: the listener that keeps login look-alike keys
    textkeys,  # noqa: F401 - imported for its effect: the listeners that keep search keys
    tracing,
)
from .config import Settings
from .decision_log import Recorder
from .engine.decisions import Decider
from .engine.policy import Policies, PolicyEngine, load_policies, sync_space_catalogue
from .engine.snapshots import SnapshotStore
from .identities import IdentityCache
from .security import Hasher

# --- the base URL of links ---------------------------------------------------------
# Links the service hands out (activation mails, technical users' connection
# files) start with AUTHZ_PUBLIC_BASE_URL; when it is unset, with the base URL of
# the request being served, but only if its Host is a trusted host (a Host
# header is the client's to forge: a forged one in a mailed link is the classic
# password-reset poisoning), else with DEFAULT_BASE_URL. docs/decisions.md.
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# What the request being served says of its base: a function, asked only when
# a link is built (most requests build none, and the request's URL costs).
_REQUEST_BASE: ContextVar[Callable[[], str] | None] = ContextVar("authz_request_base", default=None)
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]/@\s]+)(?::\d{1,5})?$")


def trusted_host(host: str, trusted: str) -> bool:
    """Whether `host` (a Host header: name, optionally :port) names one of the
    comma-separated host names of `trusted` (any port)."""
    match = _HOST.match(host or "")
    names = {name.strip().lower() for name in trusted.split(",") if name.strip()}
    return match is not None and match.group(1).lower() in names


def serving_request(
    settings: Settings, *, base_url: Callable[[], str], host: Callable[[], str]
) -> Token[Callable[[], str] | None]:
    """Called by the HTTP layer as a request starts: links built while serving it
    may use `base_url()` if `host()` is trusted (both asked only when a link is
    built). Returns the token for done_serving."""

    def base() -> str:
        return base_url() if trusted_host(host(), settings.trusted_hosts) else ""

    return _REQUEST_BASE.set(base)


def done_serving(token: Token[Callable[[], str] | None]) -> None:
    _REQUEST_BASE.reset(token)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    # Sessions that only read (on SQLite: no write lock at BEGIN).
    read_sessions: sessionmaker[Session]
    hasher: Hasher
    decider: Decider
    # The decision log's buffer and writer (AUTHZ_DECISION_LOG).
    recorder: Recorder
    # Background outbox sender of this process (None: mail is sent by `authz mail`).
    dispatcher: Any = None
    # Credentials this process resolved, while none was invalidated (identities.py).
    identities: IdentityCache = field(default_factory=IdentityCache)

    @property
    def management(self) -> PolicyEngine:
        """The policy set in force (the stored version of the latest revision, or
        the files of AUTHZ_POLICY_DIR while none is stored), for the workflows.
        Raises Unavailable when the database cannot be read."""
        return self.decider.current_policy()

    @property
    def policies(self) -> Policies:
        """The catalogues of the policy set in force (see management)."""
        return self.management.policies

    def link_base(self) -> str:
        """The base URL of the links the service mails or hands out, without a
        trailing slash (see DEFAULT_BASE_URL above)."""
        request_base = _REQUEST_BASE.get()
        base = (
            self.settings.public_base_url
            or (request_base() if request_base is not None else "")
            or DEFAULT_BASE_URL
        )
        return base.rstrip("/")


def close_runtime(rt: Runtime) -> None:
    """Write the decision log's buffer, then release the database connections of
    `rt` (both engines on SQLite)."""
    rt.recorder.close()
    rt.decider.close()
    rt.engine.dispose()
    rt.decider.db_engine.dispose()


def build_runtime(settings: Settings, *, engine: Engine | None = None) -> Runtime:
    engine = engine or db.make_engine(settings)
    policies = load_policies(settings.policy_dir)
    policy_engine = PolicyEngine(policies)
    reads = db.make_engine(settings, for_reads=True) if engine.dialect.name == "sqlite" else engine
    decider = Decider(
        policy_engine,
        reads,
        check_interval=settings.decision_check_interval_seconds,
        recycle=0 if reads.dialect.name == "sqlite" else settings.database_recycle_seconds,
        follow_versions=True,
        snapshots=SnapshotStore(settings.effective_index_dir, reads.url.render_as_string()),
        background=True,
        lease=db.lease_of(reads),
    )
    if tracing.TRACER is not None:
        for traced in {engine, reads}:
            tracing.instrument(traced)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=db.make_session_factory(engine),
        read_sessions=db.make_session_factory(reads),
        hasher=Hasher(settings),
        decider=decider,
        recorder=Recorder(engine, settings),
    )


def sync_catalogue(rt: Runtime) -> None:
    """Copy policies/spaces.yaml into the database (after migrations). Under the
    schema lock: workers and instances starting together would otherwise both
    insert a new space."""
    with db.schema_transaction(rt.engine) as conn, Session(bind=conn) as session:
        sync_space_catalogue(session, rt.policies)
        session.flush()
