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
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from models import PolicyChange, PolicyRevision, Subscription

from .. import metrics, roles
from ..errors import Unavailable
from ..roles import in_force, strongest
from .compact import CompactIndex, SnapshotError
from .index import (
    LEVEL_OF,
    LEVEL_RANK,
    Index,
    Membership,
    MembershipFacts,
    StructureEntry,
    index_pairs,
    membership_facts,
    membership_pairs,
)
from .policy import (
    LEVEL_NONE,
    SPACE_ACTIONS,
    PolicyEngine,
    PolicyFileError,
    SpaceEntry,
    SpaceFacts,
    SubjectFacts,
    parse_policies,
)
from .snapshots import SnapshotStore

log = logging.getLogger("authz.decisions")

# A process serves from a shared snapshot plus its own overlay of the keys
# changed since; past this many keys (or this share of the snapshot's
# memberships, whichever is more) it moves to a newer snapshot in the background.
OVERLAY_MIN = 10_000
OVERLAY_SHARE = 20  # 1/20th
# From this many grants on, a snapshot is built by a child process
# (SnapshotStore.rebuild): in a serving one, the long steps of a build would
# hold the interpreter while requests wait, and its leftovers would stay in
# the worker's memory (20 MB at a million grants). Below, building here is
# quicker than starting a process.
CHILD_BUILD_MIN = 100_000
# A background rebuild that failed is tried again after this long.
REBUILD_RETRY_SECONDS = 5.0

# The reason of a decision the engine failed to take (it denies).
ERROR_REASON = "internal error: denied"

# When the request being answered arrived (monotonic clock), set by the API for
# the duration of a request (answering_since): a poll of the revision that
# started after it saw every commit the caller can know of, so the request's
# decisions reuse it instead of reading the revision again (_poll_for_request).
_ARRIVED: ContextVar[float | None] = ContextVar("authz_request_arrived", default=None)


def answering_since(arrived: float) -> Token[float | None]:
    """Mark the current context as answering a request that arrived at
    `arrived` (time.monotonic()); give the token back to done_answering."""
    return _ARRIVED.set(arrived)


def done_answering(token: Token[float | None]) -> None:
    _ARRIVED.reset(token)


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
    # The stored policy version it was taken with (None: the files of
    # AUTHZ_POLICY_DIR, while the database stores no version).
    policy_version: int | None = None

    def as_dict(self, explain: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "allowed": self.allowed,
            "revision": self.revision,
            "policy_version": self.policy_version,
        }
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
    # An attachment covering the scope exists but is not in force today.
    dated: bool = False

    @property
    def sub(self) -> SubjectFacts:
        return SubjectFacts(*self.key[:6])

    @property
    def obj(self) -> SpaceFacts:
        return SpaceFacts(*self.key[6:])


def gather(
    index: Index | CompactIndex, spaces: dict[str, SpaceEntry], q: Question, today: dt.date
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
        found = structure.service(q.service)
        if found is None:
            return "unknown service"
        service_id, active = found
        service_status = "active" if active else "inactive"
    facts = index.facts(q.user_id, q.structure_id, service_id, space.code, today)
    return gathered(status, structure, space, service_id, service_status, facts)


def gathered(
    status: str,
    structure: StructureEntry,
    space: SpaceEntry,
    service_id: int | None,
    service_status: str,
    facts: MembershipFacts,
) -> Gathered:
    """The Gathered of a space question from its parts: the subject's status,
    the structure, the space, the asked service (id and "active" / "inactive",
    or None and "none") and the membership's facts on that scope and space
    (index.MembershipFacts). gather() and Decider.rights() both build keys
    here, so the two cannot disagree on what the model is given."""
    whole, on_service, role, attachment_id, all_sub, svc_sub, dated = facts
    code = space.code
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
    return Gathered(key, role, attachment_id, all_sub, svc_sub, dated)


_EMPTY = Membership()


# How an account that is not active is named in a denial.
ACCOUNT_NOT_ACTIVE = {
    "pending": "user account pending activation",
    "inactive": "user account inactive (deactivated by its owner)",
    "closed": "user account closed",
}
NO_ATTACHMENT = "no validated attachment in force covering this scope"


def account_reason(status: str) -> str:
    return ACCOUNT_NOT_ACTIVE.get(status, f"user account {status}")


def dates_reason(
    membership: Membership, today: dt.date, *, service_id: int | None, any_scope: bool = False
) -> str | None:
    """Why the validated attachments covering the scope (the whole structure,
    or `service_id`; every one with `any_scope`) are not in force today: the
    date one starts, or the date the last one ended; None if there is none."""
    covering = [
        a
        for a in membership.attachments
        if any_scope or a.service_id is None or a.service_id == service_id
    ]
    starts = [a.valid_from for a in covering if a.valid_from > today]
    if starts:
        return f"attachment starts on {min(starts).isoformat()}"
    ended = [a.valid_until for a in covering if a.valid_until and a.valid_until < today]
    if ended:
        return f"attachment ended on {max(ended).isoformat()}"
    return None


def deny_reason(sub: SubjectFacts, obj: SpaceFacts, action: str) -> str:
    """The first missing link, in the order of the model's matcher (diagnostic
    only: the decision itself is the engine's)."""
    s, o = sub, obj
    if s.user_status != "active":
        return account_reason(s.user_status)
    if not (s.whole or s.service):
        return NO_ATTACHMENT
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


# Where an allowed level comes from (allow_rule): the "all services"
# subscription, the asked service's subscription, or the role's default.
FROM_ALL, FROM_SERVICE, FROM_ROLE = 0, 1, 2


def rule_source(g: Gathered, level: str) -> int:
    """Which of the user's levels holds `level` (FROM_ALL, FROM_SERVICE or
    FROM_ROLE), in allow_rule's order."""
    if g.key[3] == level and g.all_subscription is not None:
        return FROM_ALL
    if g.key[4] == level and g.service_subscription is not None:
        return FROM_SERVICE
    return FROM_ROLE


def allow_rule(g: Gathered, level: str, space: str | None, service: str | None) -> str:
    """What allowed it: the subscription or the role default holding `level`."""
    source = rule_source(g, level)
    if source == FROM_ALL:
        return subscription_rule(g.all_subscription, level, space, None)
    if source == FROM_SERVICE:
        return subscription_rule(g.service_subscription, level, space, service)
    return f"role-default:{g.role} {level} {space} (spaces.yaml)"


def subscription_rule(packed: Any, level: str, space: str | None, service: str | None) -> str:
    """The rule of a level held by a subscription (packed: see index.pack), on
    every service (service None) or on one."""
    scope = "all services" if service is None else f"service {service}"
    return f"subscription:{packed >> 2} {level} {space} ({scope})"


# Seconds an enumeration of the whole service waits for a background index
# build (Decider.ready_for_enumeration).
ENUMERATION_WAIT = 300.0

# A right the engine allows: (service code or None, space, action, rule).
Right = tuple["str | None", str, str, str]
# A structure as Decider.member_rights walks it: its id, its entry, and per
# scope the service's code, id and status and the spaces opened there.
_Scope = tuple["str | None", "int | None", str, int]
_Plan = tuple[int, StructureEntry, list[_Scope]]
# The policy's answers on a scope's unsubscribed spaces: (space, action, rule)
# in order, where each space's entries start, and the group's number.
_Group = tuple[tuple[tuple[str, str, str], ...], tuple[int, ...], int]

# --- the decider ----------------------------------------------------------------


class Decider:
    """One per process: the index at a revision, kept fresh, and the memo."""

    def __init__(
        self,
        engine: PolicyEngine,
        db_engine: Engine,
        *,
        check_interval: float = 0.0,
        recycle: float = 0.0,
        follow_versions: bool = False,
        snapshots: SnapshotStore | None = None,
        background: bool = False,
        lease: float = 0.0,
    ) -> None:
        # The policy set decisions are taken with. With `follow_versions` (the
        # service's decider), the version the database names at the revision the
        # index is at (policy_revision.policy_version), or `engine` (the files of
        # AUTHZ_POLICY_DIR) while the database names none; else always `engine`
        # (policy tests and diffs decide with the files under test).
        self.policy = engine
        self._files_policy = engine
        self._follow_versions = follow_versions
        self._versions: dict[int, PolicyEngine] = {}
        self.db_engine = db_engine
        self._check_interval = check_interval
        # Seconds a revision read serves later questions (0: a read per request):
        # only where every writer waits as long after its commit (authz/db.py,
        # install_commit_wait; docs/decisions.md, "Revision lease").
        self._lease = lease
        self._lock = threading.RLock()
        # facts key + action -> (allowed, p2 row, deny reason): filled by enforce() only
        # (facts..., action) -> allowed, the levels.csv row, why not ("" when allowed)
        self._memo: dict[tuple[Any, ...], tuple[bool, list[str], str]] = {}
        self._mgmt_memo: dict[tuple[str | None, str, str], bool] = {}
        # subject and scope facts -> the policy's answers on the spaces held
        # without a subscription (see member_rights)
        self._rights_memo: dict[tuple[Any, ...], _Group] = {}
        # (that key, space number, the two subscriptions' levels) -> the
        # actions allowed there and where each level comes from
        self._space_memo: dict[tuple[Any, ...], tuple[tuple[str, int, str, str], ...]] = {}
        # the facts of a scope that do not depend on the user -> a small int
        self._scope_keys: dict[tuple[Any, ...], int] = {}
        self._plans: dict[int, _Plan] = {}
        self._space_codes = [space.code for space in engine.policies.spaces]
        self._space_number = {code: n for n, code in enumerate(self._space_codes)}
        self._spaces = {space.code: space for space in engine.policies.spaces}
        # Denials and management answers are immutable: one object per revision.
        self._shared: dict[object, Decision] = {}
        self._shared_revision = -1
        self._sqlite = db_engine.dialect.name == "sqlite"
        self._poll_connection: Any = None
        self._poll_since = 0.0
        # Seconds after which the kept connection is replaced (0: never).
        self._recycle = recycle
        self._data_version: int | None = None
        # The revision the last poll read, and the policy version named with it
        # (the index may be behind it: current_policy polls without refreshing).
        self._polled_revision: int | None = None
        self._polled_version: int | None = None
        # The identity revision read with it (policy_revision.identity_revision:
        # moved by every change that can invalidate a credential, migration 0011),
        # and when the last successful poll started (monotonic; -1: none since
        # the kept connection was last replaced).
        self._polled_identity: int | None = None
        self._poll_started = -1.0
        # The index decisions read (see the `index` property for other readers).
        self._index: Index | CompactIndex = Index()
        self._store = snapshots or SnapshotStore(None)
        # A full reload runs in the background while the serving index keeps
        # answering (`untrusted`: every question's keys are first read from the
        # database, see _fault_in); None: none running.
        self._background = background
        self._rebuilding: threading.Thread | None = None
        self._untrusted = False
        self._faulted: set[tuple[Any, ...]] = set()
        self._rebuild_failed_at = -1.0
        # How many times everything had to be read again (see _full_reload), and
        # how many times the revision was read (the lease's effect shows here).
        self.full_reloads = 0
        self.polls = 0
        self.revision = -1
        # The last index update not yet reported: (full | incremental, seconds).
        self._loaded: tuple[str, float] | None = None
        self._checked_at = 0.0
        # When reading the revision last failed (monotonic clock).
        self._failed_at = -1.0

    # Freshness

    def load(self) -> None:
        """Load the whole index at the latest committed revision. A serving
        decider (`background`) that finds no snapshot of a large index on this
        machine (its first start here) does not wait for one to be built: it
        answers at once, each question's keys read from the database (as
        during a full reload, see _full_reload), while the snapshot is built
        in the background and swapped in."""
        with self._lock, Session(self.db_engine) as session:
            revision, version = _read_revision(session)
            self._use_policy(version)
            if self._cold(session, revision):
                log.info(
                    "no index snapshot of revision %s on this machine yet: answering "
                    "key by key from the database while it is built",
                    revision,
                )
                self._index = Index()
                self._untrusted = True
                self._faulted = set()
                self.revision = revision
                self._checked_at = time.monotonic()
                metrics.index_from_database(True)
                self._start_rebuild(force=True)
                return
            self._load_all(session, revision)
            self.revision = revision
            self._checked_at = time.monotonic()
            self._measured()

    def _cold(self, session: Session, revision: int) -> bool:
        """Whether this serving decider starts without the index at hand: no
        snapshot in a folder it may share, and more grants than are quick to
        load here (CHILD_BUILD_MIN)."""
        if not self._background or not self._store.shared:
            return False
        if _grants_at_most(session) < CHILD_BUILD_MIN:
            return False
        found = self._store.find(session, revision)
        if found is None:
            return True
        found.release()
        return False

    def share_index(self, other: Decider) -> None:
        """Decide over `other`'s index, at its revision, instead of loading one:
        the index holds facts, which do not depend on the policy set (a policy
        diff decides with two sets over one load). Neither is refreshed after
        this: for a one-off comparison, not for a serving decider."""
        with self._lock:
            self._index = other.index
            self.revision = other.revision
            self._checked_at = other._checked_at

    @property
    def policy_version(self) -> int | None:
        """The stored policy version decisions are taken with (None: the files)."""
        return self.policy.policies.version

    def current_policy(self) -> PolicyEngine:
        """The policy set in force, for the workflows: that of the latest committed
        revision. Read on the connection kept for polling (one row; the stored
        set is loaded once per version), never from the pool: a workflow asks
        this while its own transaction holds a pooled connection, and sixteen
        of them at once must not wait for a seventeenth. The decisions' own
        set moves with the index (ensure_fresh), this one may be a revision
        ahead. Raises Unavailable (the database cannot be read)."""
        if not self._follow_versions:
            return self.policy
        with self._lock:
            if self.revision >= 0:
                self._poll_for_request()
            else:
                try:
                    self._read_polled()
                except Exception:
                    # No schema yet (before `authz db upgrade`), or no database: the
                    # files, for what needs no database; what does fails on its own.
                    self._drop_poll_connection(invalidate=True)
                    log.debug("policy version unreadable: the files", exc_info=True)
                    return self._files_policy
            return self._engine_for(self._polled_version)

    def _use_policy(self, version: int | None) -> None:
        """Decide with policy version `version` from now on (the files' set for
        None). Memos hold answers of one policy set: they start afresh."""
        if not self._follow_versions or version == self.policy.policies.version:
            return
        engine = self._engine_for(version)
        log.info("deciding with policy version %s (%s)", version, engine.policies.origin)
        self.policy = engine
        self._memo = {}
        self._mgmt_memo = {}
        self._rights_memo = {}
        self._space_memo = {}
        self._scope_keys = {}
        self._plans = {}
        self._space_codes = [space.code for space in engine.policies.spaces]
        self._space_number = {code: n for n, code in enumerate(self._space_codes)}
        self._spaces = {space.code: space for space in engine.policies.spaces}
        self._shared = {}
        self._shared_revision = -1

    def _engine_for(self, version: int | None) -> PolicyEngine:
        """The engine of stored policy version `version` (the files' for None),
        loaded once. Raises Unavailable when it is missing or does not load (fail
        closed: nothing is decided with it)."""
        if version is None:
            return self._files_policy
        found = self._versions.get(version)
        if found is not None:
            return found
        files = self._stored_files(version)
        try:
            if files is None:
                raise PolicyFileError(f"policy version {version} is not stored")
            engine = PolicyEngine(
                parse_policies(files, origin=f"policy version {version}", version=version)
            )
        except PolicyFileError as exc:
            log.error(  # noqa: TRY400 - the reason is the message; a stack says nothing more
                "cannot decide with policy version %s: %s", version, exc
            )
            raise Unavailable(
                f"Policy version {version} cannot be loaded; decisions are refused.",
                code="policy_version_unusable",
            ) from exc
        if engine.policies.digest != self._files_policy.policies.digest:
            log.warning(
                "the policy files of %s (sha256 %s) differ from policy version %s in force "
                "(sha256 %s): deciding with the stored version; apply the files with "
                "`authz policy apply` to use them (docs/operations.md)",
                self._files_policy.policies.origin,
                self._files_policy.policies.digest[:12],
                version,
                engine.policies.digest[:12],
            )
        # The last two: the decisions' set and the workflows' may differ by one.
        self._versions = {v: e for v, e in self._versions.items() if v > version - 2}
        self._versions[version] = engine
        return engine

    def _stored_files(self, version: int) -> dict[str, str] | None:
        """The files of a stored version, read on the kept connection."""
        try:
            if self._poll_connection is None:
                self._read_polled()
            cursor = self._poll_connection.cursor()
            try:
                # A DB-API cursor of either driver: int() makes the literal safe.
                cursor.execute(
                    f"SELECT files FROM policy_versions WHERE version = {int(version)}"  # noqa: S608
                )
                row = cursor.fetchone()
            finally:
                cursor.close()
        except Exception as exc:
            self._drop_poll_connection(invalidate=True)
            raise Unavailable(
                "The policy store cannot be read; decisions are refused.",
                code="policy_store_unavailable",
            ) from exc
        if row is None:
            return None
        files = row[0]
        return json.loads(files) if isinstance(files, str) else dict(files)

    @property
    def index(self) -> Index | CompactIndex:
        """The index, for readers other than decide(): trusted whole. While a
        full reload runs in the background only a question's own keys are
        (see _fault_in), so an enumeration reading it loads the whole index
        at once instead (the one case a full reload still makes wait)."""
        if self._untrusted:
            with self._lock, Session(self.db_engine) as session:
                if self._untrusted:
                    latest, version = _read_revision(session)
                    self._use_policy(version)
                    self._load_all(session, latest)
                    self.revision = latest
                    self._measured()
        return self._index

    def _load_all(self, session: Session, latest: int) -> None:
        """The whole index at `latest`, the revision `session` read, now."""
        started = time.perf_counter()
        self._index = self._fresh_index(session, latest)
        self._untrusted = False
        self._faulted = set()
        # The structures are many long-lived objects: keep them out of the cyclic
        # garbage collector's scans (a full scan otherwise stalls a request).
        gc.collect()
        gc.freeze()
        self._loaded = ("full", time.perf_counter() - started)

    def _fresh_index(self, session: Session, latest: int) -> Index | CompactIndex:
        """An index at `latest` (the revision `session` read): a snapshot the
        machine shares (snapshots.py) and the changes logged since it; the dict
        index when no snapshot can hold the tables."""
        try:
            newer_than = -1
            for _attempt in range(3):
                in_child = _grants_at_most(session) >= CHILD_BUILD_MIN
                snapshot = (
                    self._store.acquire(session, latest, in_child=in_child)
                    if newer_than < 0
                    else self._store.rebuild(
                        session, latest, newer_than=newer_than, in_child=in_child
                    )
                )
                index = CompactIndex(snapshot)
                if snapshot.revision >= latest or self._apply_changes(
                    index, session, snapshot.revision, latest
                ):
                    return index
                # The log does not lead from that snapshot to `latest`: a newer one.
                newer_than = snapshot.revision
            raise SnapshotError("no snapshot leads to the latest revision")
        except SnapshotError as exc:
            log.error(  # noqa: TRY400 - the reason is the message
                "compact index unavailable (%s): loading the tables into dicts", exc
            )
            in_dicts = Index()
            in_dicts.load_all(session)
            return in_dicts

    def _measured(self) -> None:
        """Report the last index update (see _load_all, _apply) to the metrics."""
        if self._loaded is None:
            return
        kind, seconds = self._loaded
        self._loaded = None
        sizes = self._index.sizes()
        metrics.index_loaded(kind, seconds, sizes, self.revision)
        metrics.index_from_database(self._untrusted)

    def _poll(self) -> int:
        """The latest committed revision, read on a connection kept for this (no
        session, no pool round trip). On SQLite, `PRAGMA data_version` says
        whether any other connection committed since the last poll; if none did,
        the revision is the one we have.

        The kept connection may have died since the last poll (the database
        restarted or failed over, or ended the session): the read is then tried
        once more on a new connection, so that the first request after the
        database is back is answered, not refused. The connection is also given
        back and replaced every `recycle` seconds, as the pool recycles its own.

        Raises Unavailable when the database cannot be read (fail closed),
        including when the read waits longer than the connection's statement or
        lock timeout (authz/db.py: a lock held on policy_revision).
        """
        if (
            self._poll_connection is not None
            and self._recycle > 0
            and time.monotonic() - self._poll_since > self._recycle
        ):
            self._drop_poll_connection(invalidate=False)
        # A kept connection gets a second chance on a new one; a new one does not.
        attempts = 2 if self._poll_connection is not None else 1
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            self.polls += 1
            try:
                revision = self._read_polled()
            except Exception as exc:
                self._drop_poll_connection(invalidate=True)
                if attempt < attempts:
                    log.warning("the connection kept for the policy revision failed: reconnecting")
                    continue
                log.error(  # noqa: TRY400 - an outage, not a bug: no stack
                    "cannot read the policy revision: %s", exc
                )
                self._failed_at = time.monotonic()
                raise Unavailable(
                    "The policy store cannot be read; decisions are refused.",
                    code="policy_store_unavailable",
                ) from exc
            else:
                self._poll_started = started
                return revision
        raise AssertionError("unreachable")

    def _poll_for_request(self, at_least: int | None = None) -> int:
        """The latest committed revision for the request being answered (see
        answering_since): the last poll's when it started after the request
        arrived — every commit the caller can know of was visible to it — or,
        with a lease, less than `lease` seconds ago — every writer waits that
        long after its commit before anyone can know of it (a revision below
        `at_least` is read again all the same) — else a poll of its own. Call
        with the lock held."""
        polled = self._polled_revision
        if polled is not None:
            arrived = _ARRIVED.get()
            if arrived is not None and self._poll_started >= arrived:
                return polled
            if (
                self._lease
                and time.monotonic() - self._poll_started < self._lease
                and (at_least is None or polled >= at_least)
            ):
                return polled
        return self._poll()

    def identity_revision(self) -> int:
        """The identity revision (policy_revision.identity_revision) as of now,
        read in the same poll as the policy revision (no extra round trip: the
        request's decisions reuse it, see _poll_for_request). An identity cached
        at the value this returns is still valid; any change that can invalidate
        a credential commits a new value. Raises Unavailable (the database cannot
        be read: fail closed), at once when a poll failed while this caller
        waited for the lock (as ensure_fresh does)."""
        asked_at = time.monotonic()
        with self._lock:
            if self._failed_at >= asked_at:
                raise Unavailable(
                    "The policy store cannot be read; decisions are refused.",
                    code="policy_store_unavailable",
                )
            self._poll_for_request()
            identity = self._polled_identity
            if identity is None:  # unreachable: a successful poll reads it
                raise Unavailable(
                    "The policy store cannot be read; decisions are refused.",
                    code="policy_store_unavailable",
                )
            return identity

    def _read_polled(self) -> int:
        if self._poll_connection is None:
            connection = self.db_engine.raw_connection()
            if not self._sqlite:
                raw = connection.dbapi_connection
                if raw is None:
                    raise RuntimeError("a new pool connection without a driver connection")
                raw.autocommit = True
            self._poll_connection = connection
            self._poll_since = time.monotonic()
        cursor = self._poll_connection.cursor()
        try:
            if self._sqlite:
                cursor.execute("PRAGMA data_version")
                version = cursor.fetchone()[0]
                if version == self._data_version and self._polled_revision is not None:
                    return self._polled_revision  # no other connection committed since
                self._data_version = version
            cursor.execute(
                "SELECT revision, policy_version, identity_revision FROM policy_revision "
                "WHERE id = 1"
            )
            revision, self._polled_version, identity = cursor.fetchone()
            self._polled_identity = int(identity)
            self._polled_revision = int(revision)
            return self._polled_revision
        finally:
            cursor.close()

    def _drop_poll_connection(self, *, invalidate: bool) -> None:
        """Let go of the kept connection: invalidated (it failed: the pool must not
        hand it out again), or given back to the pool."""
        connection, self._poll_connection = self._poll_connection, None
        self._data_version = None
        self._polled_revision = None
        self._polled_identity = None
        self._poll_started = -1.0
        if connection is None:
            return
        try:
            if invalidate:
                connection.invalidate()
            else:
                connection.close()
        except Exception:  # a dead connection may fail to close: it is gone either way
            log.debug("closing the kept connection failed", exc_info=True)

    def close(self) -> None:
        """Wait for a background rebuild, then give back the connection kept
        for polling the revision."""
        self.wait_rebuilt()
        with self._lock:
            self._drop_poll_connection(invalidate=False)

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
            if self._poll_for_request(at_least) != self.revision or self.revision < 0:
                with Session(self.db_engine) as session:
                    latest, version = _read_revision(session)
                    self._use_policy(version)
                    if self.revision < 0:
                        self._load_all(session, latest)
                    elif latest < self.revision:
                        # The database went back in time (restored from a backup, or a
                        # fail-over lost the last commits): what the index holds from
                        # later revisions may not exist any more.
                        log.warning(
                            "policy revision went back from %s to %s: full reload",
                            self.revision,
                            latest,
                        )
                        self._full_reload(session, latest)
                    else:
                        self._apply(session, self.revision, latest)
                    self.revision = latest
                self._measured()
            if self._untrusted and self._rebuilding is None:
                self._start_rebuild()  # the last attempt failed: again, after a pause
            self._checked_at = time.monotonic()
        if at_least is not None and at_least > self.revision:
            raise Unavailable(
                f"Revision {at_least} is not committed yet (latest is "
                f"{self.revision}); retry later.",
                code="revision_unavailable",
            )
        return self.revision

    def _apply(self, session: Session, after: int, upto: int) -> None:
        started = time.perf_counter()
        if not self._apply_changes(self._index, session, after, upto):
            self._full_reload(session, upto)
            return
        self._loaded = ("incremental", time.perf_counter() - started)
        index = self._index
        if (
            self._background
            and isinstance(index, CompactIndex)
            and index.overlay_size > max(OVERLAY_MIN, index.snapshot.n_memberships // OVERLAY_SHARE)
        ):
            # This process's own changes grew: a newer snapshot, built or found
            # in the background, while this one keeps answering.
            self._start_rebuild()

    def _apply_changes(
        self, index: Index | CompactIndex, session: Session, after: int, upto: int
    ) -> bool:
        """Reload in `index` what changed after revision `after` up to `upto`.
        False when that cannot be done key by key: a change names no scope, or
        the log no longer reaches back to `after` (`index` is then partly
        updated: to be replaced whole)."""
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
            log.info("policy revision %s -> %s: full reload", after, upto)
            return False
        for scope, a, b in set(changes):
            if scope == "policy":
                continue  # the policy set changed (ensure_fresh switched to it), no fact
            if scope == "user" and a is not None:
                index.reload_user(session, a)
            elif scope == "structure" and a is not None:
                index.reload_structure(session, a)
            elif scope == "membership" and a is not None and b is not None:
                index.reload_membership(session, a, b)
            else:  # a change this code cannot scope (records.bump_revision writes none)
                log.warning("policy change %r %s %s unknown: full reload", scope, a, b)
                return False
        return True

    def _full_reload(self, session: Session, latest: int) -> None:
        """Everything may have changed (an unscoped change, a log that no longer
        reaches back, a database gone back in time). A serving decider keeps
        answering: until a new index is swapped in (built in the background),
        each question's own keys are read from the database first (_fault_in),
        so its answer is that of `latest` or later. Others load now."""
        self.full_reloads += 1
        if not self._background or self.revision < 0:
            self._load_all(session, latest)
            return
        self._untrusted = True
        self._faulted = set()
        metrics.index_from_database(True)
        self._start_rebuild(force=True)

    def _start_rebuild(self, *, force: bool = False) -> None:
        """A new index in a background thread (see _rebuild), unless one is
        being made, or the last attempt failed less than a few seconds ago."""
        if self._rebuilding is not None:
            return
        if not force and time.monotonic() - self._rebuild_failed_at < REBUILD_RETRY_SECONDS:
            return
        self._rebuilding = threading.Thread(
            target=self._rebuild,
            args=(self._index.base_revision,),
            name="authz-index-rebuild",
            daemon=True,
        )
        self._rebuilding.start()

    def _rebuild(self, newer_than: int) -> None:
        """In the background: a snapshot newer than `newer_than` (another
        process's, or built here), outside the lock; then, under the lock, the
        changes since it, and the swap. The serving index answers meanwhile."""
        started = time.perf_counter()
        try:
            for _attempt in range(3):
                with Session(self.db_engine) as session:
                    latest, _version = _read_revision(session)
                    try:
                        fresh: Index | CompactIndex = CompactIndex(
                            self._store.rebuild(
                                session,
                                latest,
                                newer_than=newer_than,
                                in_child=_grants_at_most(session) >= CHILD_BUILD_MIN,
                            )
                        )
                    except SnapshotError:
                        # none built: another way there (an older snapshot and
                        # the log, or the dict index)
                        fresh = self._fresh_index(session, latest)
                with self._lock, Session(self.db_engine) as session:
                    now, version = _read_revision(session)
                    at = fresh.base_revision if fresh.compact else latest
                    if at < now and not self._apply_changes(fresh, session, at, now):
                        newer_than = max(newer_than, at)
                        continue  # everything changed again meanwhile
                    self._use_policy(version)
                    self._index = fresh
                    self.revision = now
                    self._untrusted = False
                    self._faulted = set()
                    self._checked_at = time.monotonic()
                    gc.freeze()
                    self._loaded = ("full", time.perf_counter() - started)
                    self._measured()
                    return
            raise SnapshotError("the revision kept moving past every new index")
        except Exception:
            self._rebuild_failed_at = time.monotonic()
            log.exception("index rebuild failed: the serving index goes on (retried later)")
        finally:
            with self._lock:
                self._rebuilding = None
                if self._untrusted:
                    self._start_rebuild()

    @property
    def snapshots(self) -> SnapshotStore:
        return self._store

    @property
    def rebuilding(self) -> bool:
        """A new index is being made in the background."""
        return self._rebuilding is not None

    @property
    def answering_key_by_key(self) -> bool:
        """A full reload is under way: each question's keys are read from the
        database before it is answered (see _full_reload)."""
        return self._untrusted

    def wait_rebuilt(self, timeout: float = 60.0) -> bool:
        """Wait for a background rebuild to be swapped in (tests, benches, the
        end of a process). True when none is running any more."""
        thread = self._rebuilding
        if thread is not None:
            thread.join(timeout)
        return self._rebuilding is None

    def ready_for_enumeration(self, timeout: float = ENUMERATION_WAIT) -> None:
        """Before enumerating the whole service (the review tools): if the
        index is being built in the background while questions are answered
        key by key from the database (the first start on a machine, a full
        reload), wait for it - reading a million memberships key by key takes
        far longer than the build. Past `timeout` the enumeration goes on key
        by key: slower, never wrong."""
        if self._untrusted and not self.wait_rebuilt(timeout):
            log.warning("index still being built after %.0f s: enumerating key by key", timeout)
        self.ensure_fresh()

    def _fault_in(self, q: Question) -> None:
        self._fault_in_keys(q.user_id, q.structure_id)

    def _fault_in_keys(self, user_id: int, structure_id: int) -> None:
        """While the index is untrusted (see _full_reload): read the user, the
        structure and the membership a question is about from the database
        into it, once each."""
        self._fault_in_missing(
            (("user", user_id), ("structure", structure_id), ("membership", user_id, structure_id))
        )

    def _fault_in_missing(self, keys: Iterable[tuple[Any, ...]]) -> None:
        """Read into the untrusted index each of `keys` not read since it
        became untrusted: ("user", id), ("structure", id), ("membership",
        user id, structure id), or every membership of a user or structure
        (("memberships of user", id), ("memberships of structure", id))."""
        missing = [k for k in keys if k not in self._faulted]
        if not missing:
            return
        index = self._index
        with Session(self.db_engine) as session:
            for key in missing:
                kind = key[0]
                if kind == "user":
                    index.reload_user(session, key[1])
                elif kind == "structure":
                    index.reload_structure(session, key[1])
                elif kind == "membership":
                    index.reload_membership(session, key[1], key[2])
                else:
                    # Every (user, structure) pair the database holds for it,
                    # and those the index holds (which may be gone since).
                    of_user = kind == "memberships of user"
                    pairs = set(index_pairs(index, key[1], of_user=of_user))
                    pairs.update(membership_pairs(session, key[1], of_user=of_user))
                    for uid, sid in pairs:
                        if ("membership", uid, sid) not in self._faulted:
                            index.reload_membership(session, uid, sid)
                            self._faulted.add(("membership", uid, sid))
        self._faulted.update(missing)

    def knows_user(self, user_id: int) -> bool:
        """Whether the user exists (at the index's revision)."""
        if self._untrusted:
            self._fault_in_missing((("user", user_id),))
        return user_id in self._index.users

    def knows_structure(self, structure_id: int) -> bool:
        """Whether the structure exists (at the index's revision)."""
        if self._untrusted:
            self._fault_in_missing((("structure", structure_id),))
        return structure_id in self._index.structures

    @contextmanager
    def reading(self, at_least: int | None = None) -> Iterator[int]:
        """Fresh (see ensure_fresh), then held still while the caller decides."""
        asked_at = time.monotonic()
        with self._lock:
            yield self.ensure_fresh(at_least, asked_at=asked_at)

    def decide_fresh(
        self, q: Question, *, at_least: int | None = None, explain: bool = False
    ) -> Decision:
        """One decision at the latest committed revision (at least `at_least`):
        ensure_fresh and decide under the lock, as `with reading(): decide()`
        does for several. Raises Unavailable as ensure_fresh does."""
        asked_at = time.monotonic()
        with self._lock:
            self.ensure_fresh(at_least, asked_at=asked_at)
            return self.decide(q, explain=explain)

    # Decisions

    def decide(
        self, q: Question, *, today: dt.date | None = None, explain: bool = False
    ) -> Decision:
        """Answer one question at the index's current revision (call
        ensure_fresh first). Never raises: errors deny."""
        today = today or roles.today()
        try:
            if self._untrusted:
                self._fault_in(q)
            if q.space is None:
                return self._management(q, today)
            return self._space(q, today, explain)
        except Exception:
            log.exception("decision error: deny")
            return Decision(
                False,
                self.revision,
                reason=ERROR_REASON,
                policy_version=self.policy_version,
            )

    def _denied(self, reason: str) -> Decision:
        return self._shared_decision(
            reason,
            lambda: Decision(
                False, self.revision, reason=reason, policy_version=self.policy_version
            ),
        )

    def _space(self, q: Question, today: dt.date, explain: bool) -> Decision:
        if q.action not in SPACE_ACTIONS:
            return self._denied("unknown action")
        g = gather(self._index, self._spaces, q, today)
        if isinstance(g, str):
            return self._denied(g)
        allowed, row, reason = self._judged(g, q.action)
        if reason == NO_ATTACHMENT and g.dated:  # name the dates, if dates are what is missing
            structure = self._index.structures[q.structure_id]
            found_service = structure.service(q.service) if q.service else None
            dates = dates_reason(
                self._index.memberships.get((q.user_id, q.structure_id)) or _EMPTY,
                today,
                service_id=found_service[0] if found_service else None,
            )
            reason = f"{reason}: {dates}" if dates else reason
        if not explain:
            if allowed:
                return Decision(
                    True,
                    self.revision,
                    rule=allow_rule(g, row[0], q.space, q.service),
                    policy_version=self.policy_version,
                )
            return self._denied(reason)
        facts = {"subject": _facts(g.sub), "resource": _facts(g.obj)}
        if allowed:
            return Decision(
                True,
                self.revision,
                rule=allow_rule(g, row[0], q.space, q.service),
                explanation={
                    "attachment_id": g.attachment_id,
                    "role": g.role,
                    "facts": facts,
                    "levels.csv": ["p2", *row],
                    "model": "policies/model.conf [matchers] m2",
                },
                policy_version=self.policy_version,
            )
        return Decision(
            False,
            self.revision,
            reason=reason,
            explanation={"facts": facts, "model": "policies/model.conf [matchers] m2"},
            policy_version=self.policy_version,
        )

    def _judged(self, g: Gathered, action: str) -> tuple[bool, list[str], str]:
        """The policy's answer to `action` on the gathered facts (memoised):
        allowed, the levels.csv row that allowed it, why not ("" if allowed)."""
        memo_key = (*g.key, action)
        found = self._memo.get(memo_key)
        if found is None:
            sub, obj = g.sub, g.obj
            allowed, row = self.policy.space(sub, obj, action)
            found = self._memo[memo_key] = (
                allowed,
                row,
                "" if allowed else deny_reason(sub, obj, action),
            )
        return found

    def rights(self, user_id: int, structure_id: int, today: dt.date) -> list[Right]:
        """Every space action decide() allows the user on the structure, with
        the rule it gives: for each scope (scopes()), each space of the policy
        and each action of SPACE_ACTIONS, in that order. At the index's
        current revision (call ensure_fresh first); errors deny (an empty
        list). See member_rights for how it is enumerated."""
        try:
            if self._untrusted:
                self._fault_in_keys(user_id, structure_id)
            plan = self._structure_plan(structure_id)
            status = self._index.users.get(user_id)
            if plan is None or status is None:
                return []
            return self._member_rights(plan, user_id, status, today)[1]
        except Exception:
            log.exception("decision error: deny")
            return []

    def member_rights(
        self, structure_id: int, today: dt.date
    ) -> Iterator[tuple[int, str | None, list[Right]]]:
        """For every member of the structure (members_of), in order: the role
        a management question is asked with (role_of) and its rights (rights()).
        The enumeration the review tools run (the rights export, the policy
        diff), at the index's current revision (call ensure_fresh first, and
        hold reading() while iterating); errors deny (no rights).

        The structure's scopes are read once, and each membership's facts once
        per scope. A space the user holds no subscription on has the facts
        every such space has for the same subject status, attachments, role,
        scope and opened spaces, so the policy's answers for those spaces are
        kept per such group (memoised until the policy set changes) and only
        the subscribed spaces are gathered one by one. Keys are built by
        gathered(), as for decide(); tests/test_differential.py compares the
        two on random worlds."""
        if self._untrusted:
            self._fault_in_missing(
                (("structure", structure_id), ("memberships of structure", structure_id))
            )
        plan = self._structure_plan(structure_id)
        users = self._index.users
        for user_id in self.members_of(structure_id):
            if self._untrusted:
                self._fault_in_missing((("user", user_id),))
            status = users.get(user_id)
            if plan is None or status is None:
                yield user_id, None, []
                continue
            try:
                yield (user_id, *self._member_rights(plan, user_id, status, today))
            except Exception:
                log.exception("decision error: deny")
                yield user_id, None, []

    def _structure_plan(self, structure_id: int) -> _Plan | None:
        """The structure and, per scope (None, then its services by code): the
        service's code and id, and a small int naming the scope's facts that
        do not depend on the user (the structure's status and kind, the
        service's status, the spaces opened there)."""
        structure = self._index.structures.get(structure_id)
        if structure is None:
            return None
        # Kept while the index holds the same entry (one is replaced whole
        # when its structure changes, never edited) and the policy set stays.
        kept = self._plans.get(structure_id)
        if kept is not None and kept[1] is structure:
            return kept
        opened = structure.opened
        codes = self._space_codes
        scopes = []
        for service in [None, *sorted(structure.services)]:
            if service is None:
                service_id, service_status = None, "none"
            else:
                service_id, active = structure.services[service]
                service_status = "active" if active else "inactive"
            shape = tuple(
                (
                    (code, None) in opened,
                    service_id is not None and (code, service_id) in opened,
                )
                for code in codes
            )
            facts = (structure.status, structure.kind, service_status, shape)
            scope_key = self._scope_keys.setdefault(facts, len(self._scope_keys))
            scopes.append((service, service_id, service_status, scope_key))
        if len(self._plans) >= 100_000:
            self._plans.clear()
        plan = self._plans[structure_id] = (structure_id, structure, scopes)
        return plan

    def _member_rights(
        self, plan: _Plan, user_id: int, status: str, today: dt.date
    ) -> tuple[str | None, list[Right]]:
        structure_id, structure, scopes = plan
        membership = self._index.memberships.get((user_id, structure_id)) or _EMPTY
        subscriptions = membership.subscriptions
        manages = None
        if status == "active":
            manages = strongest(a.role for a in membership.attachments if in_force(a, today))
        # The policy's spaces (by number) subscribed to on every service, and
        # on each service: number -> packed subscription.
        number = self._space_number
        on_all: dict[int, int] = {}
        on_one: dict[int, dict[int, int]] = {}
        for (code, on), packed in subscriptions.items():
            n = number.get(code)
            if n is None:
                continue  # a space the policy no longer has: nothing to decide
            if on is None:
                on_all[n] = packed
            else:
                on_one.setdefault(on, {})[n] = packed
        codes = self._space_codes
        out: list[Right] = []
        for service, service_id, service_status, scope_key in scopes:
            whole, on_service, role, _, _, _, _ = membership_facts(
                membership, service_id, "", today
            )
            group_key = (status, whole, on_service, role, scope_key)
            group = self._rights_memo.get(group_key)
            if group is None:
                group = self._rights_memo[group_key] = self._group_rights(
                    status, structure, service_id, service_status, (whole, on_service, role)
                )
            flat, starts, gid = group
            on_service_subs = on_one.get(service_id) if service_id is not None else None
            if not on_all and not on_service_subs:
                out += [(service, code, action, rule) for code, action, rule in flat]
                continue
            subscribed = sorted({*on_all, *on_service_subs} if on_service_subs else on_all)
            done = 0  # flat's entries emitted so far
            for n in subscribed:
                if starts[n] > done:
                    out += [(service, c, a, r) for c, a, r in flat[done : starts[n]]]
                done = starts[n + 1]
                code = codes[n]
                all_sub = on_all.get(n)
                svc_sub = on_service_subs.get(n) if on_service_subs else None
                space_key = (
                    gid,
                    n,
                    -1 if all_sub is None else all_sub & 3,
                    -1 if svc_sub is None else svc_sub & 3,
                )
                found = self._space_memo.get(space_key)
                if found is None:
                    facts = (whole, on_service, role, None, all_sub, svc_sub, False)
                    found = self._space_memo[space_key] = self._space_rights(
                        status, structure, n, service_id, service_status, facts
                    )
                for action, source, level, role_rule in found:
                    if source == FROM_ROLE:
                        rule = role_rule
                    elif source == FROM_ALL:
                        rule = subscription_rule(all_sub, level, code, None)
                    else:
                        rule = subscription_rule(svc_sub, level, code, service)
                    out.append((service, code, action, rule))
            if done < len(flat):
                out += [(service, c, a, r) for c, a, r in flat[done:]]
        return manages, out

    def _space_rights(
        self,
        status: str,
        structure: StructureEntry,
        n: int,
        service_id: int | None,
        service_status: str,
        facts: MembershipFacts,
    ) -> tuple[tuple[str, int, str, str], ...]:
        """The actions allowed on the n-th space of the policy with these
        facts, each with where its level comes from (rule_source), the level,
        and the rule if it is the role's default."""
        space = self.policy.policies.spaces[n]
        g = gathered(status, structure, space, service_id, service_status, facts)
        found = []
        for action in SPACE_ACTIONS:
            allowed, row, _reason = self._judged(g, action)
            if allowed:
                level = row[0]
                role_rule = allow_rule(g, level, space.code, None)
                found.append((action, rule_source(g, level), level, role_rule))
        return tuple(found)

    def _group_rights(
        self,
        status: str,
        structure: StructureEntry,
        service_id: int | None,
        service_status: str,
        attached: tuple[bool, bool, str | None],
    ) -> _Group:
        """What the policy allows on a scope's spaces where the user holds no
        subscription (see member_rights): (space, action, rule) in order,
        where each space's entries start in it (n -> start, one past the last
        at the end), and a number naming the group (for _space_memo)."""
        facts: MembershipFacts = (*attached, None, None, None, False)
        per_space = []
        for space in self.policy.policies.spaces:
            g = gathered(status, structure, space, service_id, service_status, facts)
            held = []
            for action in SPACE_ACTIONS:
                allowed, row, _reason = self._judged(g, action)
                if allowed:
                    held.append((action, allow_rule(g, row[0], space.code, None)))
            per_space.append(tuple(held))
        flat = tuple(
            (space.code, action, rule)
            for space, held in zip(self.policy.policies.spaces, per_space, strict=True)
            for action, rule in held
        )
        starts = [0]
        for pairs in per_space:
            starts.append(starts[-1] + len(pairs))
        return flat, tuple(starts), len(self._rights_memo)

    def management_rights(self, user_id: int, structure_id: int, today: dt.date) -> set[str]:
        """The management actions decide() allows the user on the structure
        (asked with space None), at the index's current revision."""
        if self._untrusted:
            self._fault_in_keys(user_id, structure_id)
        if user_id not in self._index.users:
            return set()
        return self.management_allowed(structure_id, self.role_of(user_id, structure_id, today))

    def management_allowed(self, structure_id: int, role: str | None) -> set[str]:
        """The management actions decide() allows a member of the structure
        whose role there (role_of, member_rights) is `role`."""
        structure = self._index.structures.get(structure_id)
        if structure is None:
            return set()
        out = set()
        for action in self.policy.policies.actions:
            key = (role, action, structure.status)
            allowed = self._mgmt_memo.get(key)
            if allowed is None:
                allowed = self._mgmt_memo[key] = self.policy.allows(role, action, structure.status)
            if allowed:
                out.add(action)
        return out

    def role_of(self, user_id: int, structure_id: int, today: dt.date) -> str | None:
        """The role a management question is asked with (see model.conf, r.role):
        the strongest of the user's attachments in force (all validated)."""
        if self._untrusted:
            self._fault_in_keys(user_id, structure_id)
        if self._index.users.get(user_id) != "active":
            return None
        membership = self._index.memberships.get((user_id, structure_id)) or _EMPTY
        return strongest(a.role for a in membership.attachments if in_force(a, today))

    def _management(self, q: Question, today: dt.date) -> Decision:
        if q.action not in self.policy.policies.actions:
            return self._denied("unknown action")
        if q.user_id not in self._index.users:
            return self._denied("unknown subject")
        structure = self._index.structures.get(q.structure_id)
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
                    policy_version=self.policy_version,
                ),
            )
        if role is None:
            status = self._index.users[q.user_id]
            if status != "active":
                return self._denied(account_reason(status))
            dates = dates_reason(
                self._index.memberships.get((q.user_id, q.structure_id)) or _EMPTY,
                today,
                service_id=None,
                any_scope=True,
            )
            reason = "no validated attachment in force on this structure"
            return self._denied(f"{reason}: {dates}" if dates else reason)
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
        if self._untrusted:
            self._fault_in_missing((("structure", structure_id),))
        entry = self._index.structures.get(structure_id)
        return [None, *sorted(entry.services)] if entry else []

    def grants(
        self, user_id: int, structure_id: int, today: dt.date | None = None
    ) -> Iterator[tuple[str | None, str, list[str]]]:
        """(service code or None, space, allowed actions) for every scope and
        space where the user may do something on this structure (see rights)."""
        if self._untrusted:
            self._fault_in_missing((("structure", structure_id),))
        held: dict[tuple[str | None, str], list[str]] = {}
        for service, space, action, _rule in self.rights(
            user_id, structure_id, today or roles.today()
        ):
            held.setdefault((service, space), []).append(action)
        for (service, space), actions in held.items():
            yield service, space, actions

    def structures_of(self, user_id: int) -> list[int]:
        if self._untrusted:
            self._fault_in_missing((("memberships of user", user_id),))
        return self._index.structures_for(user_id)

    def members_of(self, structure_id: int) -> list[int]:
        if self._untrusted:
            self._fault_in_missing((("memberships of structure", structure_id),))
        return self._index.members(structure_id)


def _facts(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}


def _grants_at_most(session: Session) -> int:
    """An upper bound of the grants (the highest subscription id), read from
    the primary key's index at once."""
    return int(session.scalar(select(func.max(Subscription.id))) or 0)


def _read_revision(session: Session) -> tuple[int, int | None]:
    """The latest committed revision and the policy version in force at it."""
    row = session.execute(
        select(PolicyRevision.revision, PolicyRevision.policy_version).where(PolicyRevision.id == 1)
    ).one()
    return int(row.revision), row.policy_version
