"""Decisions on spaces and structures, fast and fresh.

How a check is answered (see docs/decision-engine.md):

1. The **index** (index.py) holds, in memory, the facts the model needs, read
   from the service's own tables: users' statuses, structures with their
   services and opened spaces, and per (user, structure) the validated
   attachments and subscriptions. It is loaded once, then updated
   incrementally from the `policy_changes` log whenever the policy revision
   moves (`Decider.ensure_fresh`).
2. For one question, `gather` reads the request's facts from the index
   (`SubjectFacts`, `SpaceFacts` of policy.py). Nothing is decided there; a
   user's role is the strongest of their attachments in force (authz/roles.py).
3. The **Casbin model** (policies/model.conf) decides on those facts. Facts are
   a handful of enumerations, so the engine's answer for a given fact tuple is
   memoised: the hot path is dictionary look-ups, and the model stays what
   decides (tests/test_differential.py checks the memo against `enforce()`).

Unknown subjects, structures, services, spaces or actions are denied before the
engine is asked. Any engine error denies.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models import PolicyChange, PolicyRevision

from .. import roles
from ..errors import Unavailable
from ..roles import RANK, in_force, strongest
from .index import LEVEL_OF, LEVEL_RANK, Index, Membership
from .policy import LEVEL_NONE, SPACE_ACTIONS, PolicyEngine, SpaceEntry, SpaceFacts, SubjectFacts

log = logging.getLogger("authz.decisions")


# --- questions and answers ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Question:
    user_id: int
    structure_id: int
    space: str | None  # None: a management action on the structure
    action: str
    service: str | None = None  # service code, for a question about one service


@dataclass(frozen=True)
class Decision:
    allowed: bool
    revision: int
    rule: str | None = None
    reason: str | None = None
    explanation: dict[str, Any] | None = None

    def as_dict(self, explain: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"allowed": self.allowed, "revision": self.revision}
        out["rule" if self.allowed else "reason"] = self.rule if self.allowed else self.reason
        if explain and self.explanation is not None:
            out["explanation"] = self.explanation
        return out


@dataclass(frozen=True, slots=True)
class Gathered:
    """The facts of one space question — `key`: the flat tuple of every fact
    value of policies/model.conf's r2.sub then r2.obj, which is also the memo
    key — and where each level came from (for the rule and the explanation)."""

    key: tuple
    role: str | None
    attachment_id: int | None
    all_subscription: int | None  # packed (see pack)
    service_subscription: int | None

    @property
    def sub(self) -> SubjectFacts:
        return SubjectFacts(*self.key[:6])

    @property
    def obj(self) -> SpaceFacts:
        return SpaceFacts(*self.key[6:])


def gather(
    index: Index, spaces: dict[str, SpaceEntry], q: Question, today: dt.date
) -> Gathered | str:
    """The request facts of policies/model.conf for a space question, or the
    reason the question cannot even be put (unknown subject, structure…).
    Plain look-ups only: the hot path of every decision."""
    status = index.users.get(q.user_id)
    if status is None:
        return "unknown subject"
    structure = index.structures.get(q.structure_id)
    if structure is None:
        return "unknown structure"
    space = spaces.get(q.space or "")
    if space is None:
        return "unknown space"
    service_id = None
    service_status = "none"
    if q.service is not None:
        found = structure.services.get(q.service)
        if found is None:
            return "unknown service"
        service_id, active = found
        service_status = "active" if active else "inactive"
    membership = index.memberships.get((q.user_id, q.structure_id)) or _EMPTY
    whole = on_service = False
    role, attachment_id, best = None, None, 0
    for att in membership.attachments:  # all validated: the strongest in force counts
        if not in_force(att, today):
            continue
        if att.service_id is None:
            whole = True
        elif att.service_id == service_id:
            on_service = True
        else:
            continue
        rank = RANK[att.role]
        if rank > best:
            best, role, attachment_id = rank, att.role, att.id
    code = space.code
    subs = membership.subscriptions
    all_sub = subs.get((code, None))
    svc_sub = subs.get((code, service_id)) if service_id is not None else None
    opened = structure.opened
    key = (
        status,
        whole,
        on_service,
        LEVEL_OF[all_sub & 3] if all_sub is not None else LEVEL_NONE,
        LEVEL_OF[svc_sub & 3] if svc_sub is not None else LEVEL_NONE,
        space.granted_by_default.get(role, LEVEL_NONE) if role else LEVEL_NONE,
        structure.status,
        structure.kind,
        space.public_only,
        (code, None) in opened,
        service_id is not None and (code, service_id) in opened,
        service_status,
    )
    return Gathered(key, role, attachment_id, all_sub, svc_sub)


_EMPTY = Membership()


def deny_reason(sub: SubjectFacts, obj: SpaceFacts, action: str) -> str:
    """The first missing link, in the order of the model's matcher (diagnostic
    only: the decision itself is the engine's)."""
    s, o = sub, obj
    if s.user_status != "active":
        return f"user account {s.user_status}"
    if not (s.whole or s.service):
        return "no validated attachment in force covering this scope"
    if not (o.opened_structure or o.opened_service):
        return "space not opened here"
    if o.service_status == "inactive":
        return "service inactive"
    if o.public_only and o.structure_kind != "public":
        return "public-only space on a private structure"
    best = max((s.all_level, s.service_level, s.role_level), key=LEVEL_RANK.__getitem__)
    if best == LEVEL_NONE:
        return "no subscription or role default on this space"
    if action == "create" and o.structure_status != "active":
        return f"structure {o.structure_status}: {action} refused"
    return f"level {best} does not allow {action}"


def allow_rule(g: Gathered, level: str, q: Question) -> str:
    """What allowed it: the subscription or the role default holding `level`."""
    if g.key[3] == level and g.all_subscription is not None:
        return f"subscription:{g.all_subscription >> 2} {level} {q.space} (all services)"
    if g.key[4] == level and g.service_subscription is not None:
        return f"subscription:{g.service_subscription >> 2} {level} {q.space} (service {q.service})"
    return f"role-default:{g.role} {level} {q.space} (spaces.yaml)"


# --- the decider ----------------------------------------------------------------


class Decider:
    """One per process: the index at a revision, kept fresh, and the memo."""

    def __init__(
        self, engine: PolicyEngine, db_engine: Engine, *, check_interval: float = 0.0
    ) -> None:
        self.policy = engine
        self.db_engine = db_engine
        self._check_interval = check_interval
        self._lock = threading.RLock()
        # facts key + action -> (allowed, p2 row, deny reason): filled by enforce() only
        self._memo: dict[tuple, tuple[bool, list[str], str | None]] = {}
        self._mgmt_memo: dict[tuple[str | None, str, str], bool] = {}
        self._spaces = {space.code: space for space in engine.policies.spaces}
        # Denials and management answers are immutable: one object per revision.
        self._shared: dict[object, Decision] = {}
        self._shared_revision = -1
        self._sqlite = db_engine.dialect.name == "sqlite"
        self._poll_connection: Any = None
        self._data_version: int | None = None
        self.index = Index()
        self.revision = -1
        self._checked_at = 0.0
        # When reading the revision last failed (monotonic clock).
        self._failed_at = -1.0

    # Freshness

    def load(self) -> None:
        """Load the whole index at the latest committed revision."""
        with self._lock, Session(self.db_engine) as session:
            revision = _read_revision(session)
            self._load_all(session)
            self.revision = revision
            self._checked_at = time.monotonic()

    def _load_all(self, session: Session) -> None:
        self.index.load_all(session)
        # The index is a million long-lived objects: keep them out of the cyclic
        # garbage collector's scans (a full scan otherwise stalls a request ~0.4 s).
        gc.collect()
        gc.freeze()

    def _poll(self) -> int:
        """The latest committed revision, read on a connection kept for this (no
        session, no pool round trip). On SQLite, `PRAGMA data_version` says
        whether any other connection committed since the last poll; if none did,
        the revision is the one we have.

        Raises Unavailable when the database cannot be read (fail closed),
        including when the read waits longer than the connection's statement or
        lock timeout (authz/db.py: a lock held on policy_revision).
        """
        try:
            if self._poll_connection is None:
                connection = self.db_engine.raw_connection()
                if not self._sqlite:
                    connection.dbapi_connection.autocommit = True
                self._poll_connection = connection
            cursor = self._poll_connection.cursor()
            try:
                if self._sqlite:
                    cursor.execute("PRAGMA data_version")
                    version = cursor.fetchone()[0]
                    if version == self._data_version and self.revision >= 0:
                        return self.revision
                    self._data_version = version
                cursor.execute("SELECT revision FROM policy_revision WHERE id = 1")
                return int(cursor.fetchone()[0])
            finally:
                cursor.close()
        except Exception as exc:
            log.exception("cannot read the policy revision")
            if self._poll_connection is not None:
                self._poll_connection.invalidate()
                self._poll_connection = None
            self._data_version = None
            self._failed_at = time.monotonic()
            raise Unavailable(
                "The policy store cannot be read; decisions are refused.",
                code="policy_store_unavailable",
            ) from exc

    def close(self) -> None:
        """Give back the connection kept for polling the revision."""
        with self._lock:
            if self._poll_connection is not None:
                self._poll_connection.close()
                self._poll_connection = None

    def ensure_fresh(self, at_least: int | None = None, *, asked_at: float | None = None) -> int:
        """Bring the index to the latest committed revision (one cheap read when
        nothing moved). Raises Unavailable when `at_least` is beyond what is
        committed, or the database cannot be read; at once when reading it
        failed since `asked_at` (when the caller started waiting for the lock)."""
        if (
            (at_least is None or at_least <= self.revision)
            and self._check_interval
            and time.monotonic() - self._checked_at < self._check_interval
            and self.revision >= 0
        ):
            return self.revision
        asked_at = time.monotonic() if asked_at is None else asked_at
        with self._lock:
            if self._failed_at >= asked_at:
                # The poll that ran while this caller waited for the lock failed:
                # fail closed at once rather than wait another timeout in turn.
                raise Unavailable(
                    "The policy store cannot be read; decisions are refused.",
                    code="policy_store_unavailable",
                )
            if self._poll() > self.revision or self.revision < 0:
                with Session(self.db_engine) as session:
                    latest = _read_revision(session)
                    if self.revision < 0:
                        self._load_all(session)
                    else:
                        self._apply(session, self.revision, latest)
                    self.revision = latest
            self._checked_at = time.monotonic()
        if at_least is not None and at_least > self.revision:
            raise Unavailable(
                f"Revision {at_least} is not committed yet (latest is "
                f"{self.revision}); retry later.",
                code="revision_unavailable",
            )
        return self.revision

    def _apply(self, session: Session, after: int, upto: int) -> None:
        changes = session.execute(
            select(PolicyChange.scope, PolicyChange.a, PolicyChange.b).where(
                PolicyChange.revision > after, PolicyChange.revision <= upto
            )
        ).all()
        first = session.scalar(
            select(PolicyChange.revision)
            .where(PolicyChange.revision > after)
            .order_by(PolicyChange.revision)
            .limit(1)
        )
        if any(c.scope == "all" for c in changes) or first != after + 1:
            # A full reload when asked for, or when the log no longer reaches back.
            log.info("policy revision %s -> %s: full reload", after, upto)
            self._load_all(session)
            return
        for scope, a, b in set(changes):
            if scope == "user":
                self.index.reload_user(session, a)
            elif scope == "structure":
                self.index.reload_structure(session, a)
            elif scope == "membership":
                self.index.reload_membership(session, a, b)

    @contextmanager
    def reading(self, at_least: int | None = None) -> Iterator[int]:
        """Fresh (see ensure_fresh), then held still while the caller decides."""
        asked_at = time.monotonic()
        with self._lock:
            yield self.ensure_fresh(at_least, asked_at=asked_at)

    # Decisions

    def decide(
        self, q: Question, *, today: dt.date | None = None, explain: bool = False
    ) -> Decision:
        """Answer one question at the index's current revision (call
        ensure_fresh first). Never raises: errors deny."""
        today = today or roles.today()
        try:
            if q.space is None:
                return self._management(q, today)
            return self._space(q, today, explain)
        except Exception:
            log.exception("decision error: deny")
            return Decision(False, self.revision, reason="internal error: denied")

    def _denied(self, reason: str) -> Decision:
        return self._shared_decision(reason, lambda: Decision(False, self.revision, reason=reason))

    def _space(self, q: Question, today: dt.date, explain: bool) -> Decision:
        if q.action not in SPACE_ACTIONS:
            return self._denied("unknown action")
        g = gather(self.index, self._spaces, q, today)
        if isinstance(g, str):
            return self._denied(g)
        memo_key = (*g.key, q.action)
        found = self._memo.get(memo_key)
        if found is None:
            sub, obj = g.sub, g.obj
            allowed, row = self.policy.space(sub, obj, q.action)
            found = self._memo[memo_key] = (
                allowed,
                row,
                None if allowed else deny_reason(sub, obj, q.action),
            )
        allowed, row, reason = found
        if not explain:
            if allowed:
                return Decision(True, self.revision, rule=allow_rule(g, row[0], q))
            return self._denied(reason)
        facts = {"subject": _facts(g.sub), "resource": _facts(g.obj)}
        if allowed:
            return Decision(
                True,
                self.revision,
                rule=allow_rule(g, row[0], q),
                explanation={
                    "attachment_id": g.attachment_id,
                    "role": g.role,
                    "facts": facts,
                    "levels.csv": ["p2", *row],
                    "model": "policies/model.conf [matchers] m2",
                },
            )
        return Decision(
            False,
            self.revision,
            reason=reason,
            explanation={"facts": facts, "model": "policies/model.conf [matchers] m2"},
        )

    def role_of(self, user_id: int, structure_id: int, today: dt.date) -> str | None:
        """The role a management question is asked with (see model.conf, r.role):
        the strongest of the user's attachments in force (all validated)."""
        if self.index.users.get(user_id) != "active":
            return None
        membership = self.index.memberships.get((user_id, structure_id)) or _EMPTY
        return strongest(a.role for a in membership.attachments if in_force(a, today))

    def _management(self, q: Question, today: dt.date) -> Decision:
        if q.action not in self.policy.policies.actions:
            return self._denied("unknown action")
        if q.user_id not in self.index.users:
            return self._denied("unknown subject")
        structure = self.index.structures.get(q.structure_id)
        if structure is None:
            return self._denied("unknown structure")
        role = self.role_of(q.user_id, q.structure_id, today)
        key = (role, q.action, structure.status)
        allowed = self._mgmt_memo.get(key)
        if allowed is None:
            allowed = self._mgmt_memo[key] = self.policy.allows(role, q.action, structure.status)
        if allowed:
            return self._shared_decision(
                key,
                lambda: Decision(
                    True,
                    self.revision,
                    rule=f"role:{role} {q.action} ({structure.status} structure, roles.yaml)",
                ),
            )
        if role is None:
            return self._denied("no validated attachment in force on this structure")
        return self._denied(f"role {role} may not {q.action} on an {structure.status} structure")

    def _shared_decision(self, key: object, make: Callable[[], Decision]) -> Decision:
        """One immutable Decision per key and revision."""
        if self._shared_revision != self.revision:
            self._shared.clear()
            self._shared_revision = self.revision
        found = self._shared.get(key)
        if found is None:
            found = self._shared[key] = make()
        return found

    # Enumerations, for "what may this user do" and "who may do what here"

    def scopes(self, structure_id: int) -> list[str | None]:
        """None (the whole structure) then every service code of the structure."""
        entry = self.index.structures.get(structure_id)
        return [None, *sorted(entry.services)] if entry else []

    def grants(
        self, user_id: int, structure_id: int, today: dt.date | None = None
    ) -> Iterator[tuple[str | None, str, list[str]]]:
        """(service code or None, space, allowed actions) for every scope and
        space where the user may do something on this structure."""
        today = today or roles.today()
        for service in self.scopes(structure_id):
            for space in self.policy.policies.spaces:
                actions = [
                    a
                    for a in SPACE_ACTIONS
                    if self.decide(
                        Question(user_id, structure_id, space.code, a, service), today=today
                    ).allowed
                ]
                if actions:
                    yield service, space.code, actions

    def structures_of(self, user_id: int) -> list[int]:
        return sorted(self.index.structures_of.get(user_id, ()))

    def members_of(self, structure_id: int) -> list[int]:
        return sorted(self.index.members_of.get(structure_id, ()))


def _facts(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}


def _read_revision(session: Session) -> int:
    return session.execute(
        select(PolicyRevision.revision).where(PolicyRevision.id == 1)
    ).scalar_one()
