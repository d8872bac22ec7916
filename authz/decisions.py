"""Decisions on spaces and structures, fast and fresh.

How a check is answered (see docs/decision-engine.md):

1. The **index** holds, in memory, the facts the model needs, read from the
   service's own tables: users' statuses, structures with their services and
   opened spaces, and per (user, structure) the validated attachments and
   subscriptions. It is loaded once, then updated incrementally from the
   `policy_changes` log whenever the policy revision moves.
2. For one question, the index gives the request's facts (`SubjectFacts`,
   `SpaceFacts` of authz/policy.py). Nothing is decided here.
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
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models import (
    Attachment,
    OpenedSpace,
    PolicyChange,
    PolicyRevision,
    Service,
    Structure,
    Subscription,
    User,
)

from .errors import Unavailable
from .policy import LEVEL_NONE, SPACE_ACTIONS, PolicyEngine, SpaceEntry, SpaceFacts, SubjectFacts
from . import roles
from .roles import RANK, in_force, strongest

log = logging.getLogger("authz.decisions")

LEVEL_RANK = {LEVEL_NONE: 0, "consult": 1, "modify": 2}


# --- the index ----------------------------------------------------------------


@dataclass(slots=True)
class StructureEntry:
    status: str
    kind: str
    # service code -> (service id, active)
    services: dict[str, tuple[int, bool]] = field(default_factory=dict)
    # service id -> code
    codes: dict[int, str] = field(default_factory=dict)
    # (space code, service id or None) opened
    opened: set[tuple[str, int | None]] = field(default_factory=set)


@dataclass(slots=True)
class AttachmentEntry:
    id: int
    service_id: int | None
    role: str
    valid_from: dt.date
    valid_until: dt.date | None


@dataclass(slots=True)
class Membership:
    attachments: list[AttachmentEntry] = field(default_factory=list)
    # (space code, service id or None) -> packed (subscription id, level): see pack
    subscriptions: dict[tuple[str, int | None], int] = field(default_factory=dict)


class Index:
    """The facts of the current revision. Mutated only under Decider's lock."""

    def __init__(self) -> None:
        self.users: dict[int, str] = {}  # user id -> status
        self.structures: dict[int, StructureEntry] = {}
        self.memberships: dict[tuple[int, int], Membership] = {}
        # structure id -> user ids with a membership; user id -> structure ids
        self.members_of: dict[int, set[int]] = {}
        self.structures_of: dict[int, set[int]] = {}

    # Loading: whole tables at start-up, or a few keys per change.

    def load_all(self, session: Session) -> None:
        self.__init__()
        statuses: dict[str, str] = {}
        for uid, status in _driver_rows(session, select(User.id, User.status)):
            self.users[uid] = statuses.setdefault(status, status)
        self._load_structures(session, None)
        self._load_memberships(session, None)

    def reload_user(self, session: Session, user_id: int) -> None:
        status = session.scalar(select(User.status).where(User.id == user_id))
        if status is None:
            self.users.pop(user_id, None)
        else:
            self.users[user_id] = status

    def reload_structure(self, session: Session, structure_id: int) -> None:
        self.structures.pop(structure_id, None)
        self._load_structures(session, structure_id)

    def reload_membership(self, session: Session, user_id: int, structure_id: int) -> None:
        self._drop_membership(user_id, structure_id)
        self.reload_user(session, user_id)
        self._load_memberships(session, (user_id, structure_id))

    def _drop_membership(self, user_id: int, structure_id: int) -> None:
        self.memberships.pop((user_id, structure_id), None)
        self.members_of.get(structure_id, set()).discard(user_id)
        self.structures_of.get(user_id, set()).discard(structure_id)

    def _load_structures(self, session: Session, only: int | None) -> None:
        def where(stmt, column):
            return stmt if only is None else stmt.where(column == only)

        for sid, status, kind in session.execute(
            where(select(Structure.id, Structure.status, Structure.kind), Structure.id)
        ):
            self.structures[sid] = StructureEntry(status=status, kind=kind)
        for svc_id, sid, code, active in session.execute(
            where(
                select(Service.id, Service.structure_id, Service.code, Service.active),
                Service.structure_id,
            )
        ):
            entry = self.structures.get(sid)
            if entry is not None:
                entry.services[code] = (svc_id, active)
                entry.codes[svc_id] = code
        for sid, space, svc_id in session.execute(
            where(
                select(OpenedSpace.structure_id, OpenedSpace.space_code, OpenedSpace.service_id),
                OpenedSpace.structure_id,
            )
        ):
            entry = self.structures.get(sid)
            if entry is not None:
                entry.opened.add((space, svc_id))

    def _membership(self, user_id: int, structure_id: int) -> Membership:
        key = (user_id, structure_id)
        found = self.memberships.get(key)
        if found is None:
            found = self.memberships[key] = Membership()
            self.members_of.setdefault(structure_id, set()).add(user_id)
            self.structures_of.setdefault(user_id, set()).add(structure_id)
        return found

    def _load_memberships(self, session: Session, only: tuple[int, int] | None) -> None:
        att = select(
            Attachment.id,
            Attachment.user_id,
            Attachment.structure_id,
            Attachment.service_id,
            Attachment.role,
            Attachment.valid_from,
            Attachment.valid_until,
        ).where(Attachment.status == "validated")
        sub = select(
            Subscription.id,
            Subscription.user_id,
            Subscription.structure_id,
            Subscription.space_code,
            Subscription.service_id,
            Subscription.level,
        ).where(Subscription.status == "validated")
        if only is not None:
            att = att.where(Attachment.user_id == only[0], Attachment.structure_id == only[1])
            sub = sub.where(Subscription.user_id == only[0], Subscription.structure_id == only[1])
        # Every row brings its own copies of the same few strings, dates and
        # (space, service) keys: keep one object of each (a third of the memory).
        shared: dict[Any, Any] = {}
        one = shared.setdefault
        for aid, uid, sid, svc, role, start, end in _driver_rows(session, att):
            self._membership(uid, sid).attachments.append(
                AttachmentEntry(
                    aid,
                    svc,
                    one(role, role),
                    _date(shared, start),
                    None if end is None else _date(shared, end),
                )
            )
        for sub_id, uid, sid, space, svc, level in _driver_rows(session, sub):
            key = (space, svc)
            self._membership(uid, sid).subscriptions[one(key, key)] = pack(sub_id, level)


def pack(subscription_id: int, level: str) -> int:
    """A subscription in the index: its id and level in one int (one object)."""
    return subscription_id << 2 | LEVEL_RANK[level]


def unpack(packed: int) -> tuple[int, str]:
    """(subscription id, level) of a packed subscription."""
    return packed >> 2, LEVEL_OF[packed & 3]


LEVEL_OF = (LEVEL_NONE, "consult", "modify")


def _date(shared: dict[Any, Any], value: Any) -> dt.date:
    """One date object per distinct value (SQLite's driver gives ISO strings)."""
    found = shared.get(value)
    if found is None:
        found = shared[value] = dt.date.fromisoformat(value) if isinstance(value, str) else value
    return found


def _driver_rows(session: Session, stmt: Any) -> Iterator[tuple]:
    """The rows of a Core select as the driver's plain tuples, in the session's
    transaction: a million SQLAlchemy Row objects would cost seconds at start-up.
    PostgreSQL streams them through a server-side cursor."""
    connection = session.connection()
    sql = str(stmt.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    raw = connection.connection.dbapi_connection
    cursor = (
        raw.cursor() if connection.dialect.name == "sqlite" else raw.cursor(name="authz_index_load")
    )
    try:
        cursor.execute(sql)
        while batch := cursor.fetchmany(10_000):
            yield from batch
    finally:
        cursor.close()


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

        Raises Unavailable when the database cannot be read (fail closed).
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

    def ensure_fresh(self, at_least: int | None = None) -> int:
        """Bring the index to the latest committed revision (one cheap read when
        nothing moved). Raises Unavailable when `at_least` is beyond what is
        committed, or the database cannot be read."""
        if (
            (at_least is None or at_least <= self.revision)
            and self._check_interval
            and time.monotonic() - self._checked_at < self._check_interval
            and self.revision >= 0
        ):
            return self.revision
        with self._lock:
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
        with self._lock:
            yield self.ensure_fresh(at_least)

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
