"""Differential test of the decision fast path.

The fast path (`Decider.decide`: the in-memory index, updated incrementally from
the change log, and the memo of engine answers) must give the same answer as a
slow REFERENCE written here from the definitions in the comments of
policies/model.conf: the facts are read by SQL straight from the tables, one
question at a time, and handed to pycasbin (`PolicyEngine.space` / `.allows`,
i.e. `enforce()`, no memo). Nothing of authz.engine.decisions is used by the reference.

Each seeded run loads random worlds (authz/review/fixtures.py), compares, then applies
rounds of random mutations, each committed with `bump_revision` naming its
scope, calls `ensure_fresh()` (incremental: no full reload allowed) and
compares again. Questions are asked on today or a day either side, so that
validity dates are crossed. A failure names its seed, world, mutations and
question, and replays identically.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import casbin
import pytest
import yaml
from casbin.persist.adapters import FileAdapter
from sqlalchemy import Date, String, bindparam, delete, func, select, text
from sqlalchemy.orm import Session

from authz import roles
from authz.config import ROOT
from authz.engine.decisions import Decider, Question
from authz.engine.policy import (
    NO_ROLE,
    SPACE_ACTIONS,
    PolicyEngine,
    SpaceFacts,
    SubjectFacts,
    load_policies,
)
from authz.review.fixtures import load_world
from authz.review.policytest import Change, diff_world, world_runtime
from authz.runtime import Runtime
from authz.workflows.records import bump_revision
from models import Attachment, OpenedSpace, PolicyChange, Service, Structure, Subscription, User
from tests.support.backend import BACKEND
from tests.support.index import assert_same_facts, dict_index

# Five seeds on SQLite, two on PostgreSQL: the engine compared here is the same
# on both; PostgreSQL adds the index's load path, which two seeds exercise, at a
# fraction of CI's time (each seed costs about a minute there).
SEEDS = (11, 23, 37, 41, 53) if BACKEND == "sqlite" else (11, 23)
WORLDS_PER_SEED = 40
QUESTIONS_PER_ROUND = 12
MUTATION_ROUNDS = 3

_SPACES_DOC = yaml.safe_load((ROOT / "policies" / "spaces.yaml").read_text(encoding="utf-8"))
# space code -> {role: level} (spaces.yaml, granted_by_default)
ROLE_DEFAULTS: dict[str, dict[str, str]] = {
    s["code"]: dict(s.get("granted_by_default") or {}) for s in _SPACES_DOC["spaces"]
}
SPACES = sorted(ROLE_DEFAULTS)
ROLE_DEFAULT_SPACES = [s for s in SPACES if ROLE_DEFAULTS[s]]
MANAGEMENT_ACTIONS = sorted(
    yaml.safe_load((ROOT / "policies" / "roles.yaml").read_text(encoding="utf-8"))["actions"]
)
# "several attachments: the strongest role" (model.conf); weakest first.
ROLE_STRENGTH = ("technical", "simple", "secondary", "principal")
# Weighted towards the states that grant, so that many answers are allows.
USER_STATUSES = ("active",) * 10 + ("inactive", "pending", "closed")
ATTACHMENT_STATUSES = ("validated",) * 16 + ("pending", "refused", "deactivated", "deleted")


# --- the reference ------------------------------------------------------------
# Each fact of model.conf's request, in SQL. A role is held through a VALIDATED
# attachment in force on the asked day (valid_from <= day <= valid_until); with
# several, the strongest. `asked` is the asked service (no row: a structure-wide
# question, or an unknown service).

IN_FORCE = (
    "a.status = 'validated' AND a.valid_from <= :today "
    "AND (a.valid_until IS NULL OR a.valid_until >= :today)"
)
ROLE_RANK = (
    "CASE a.role "
    + " ".join(f"WHEN '{role}' THEN {rank}" for rank, role in enumerate(ROLE_STRENGTH, 1))
    + " END"
)
ASKED_ID = "(SELECT id FROM asked)"

SPACE_FACTS = text(f"""
WITH asked AS (SELECT id, active FROM services
               WHERE structure_id = :s AND lower(code) = lower(:service))
SELECT
  (SELECT status FROM users WHERE id = :u)              AS user_status,
  (SELECT status FROM structures WHERE id = :s)         AS structure_status,
  (SELECT kind FROM structures WHERE id = :s)           AS structure_kind,
  (SELECT public_only FROM spaces WHERE code = :space)  AS public_only,
  (SELECT COUNT(*) FROM asked)                          AS service_found,
  (SELECT active FROM asked)                            AS service_active,
  EXISTS (SELECT 1 FROM attachments a WHERE a.user_id = :u AND a.structure_id = :s
          AND a.service_id IS NULL AND {IN_FORCE})      AS whole,
  EXISTS (SELECT 1 FROM attachments a WHERE a.user_id = :u AND a.structure_id = :s
          AND a.service_id = {ASKED_ID} AND {IN_FORCE}) AS on_service,
  (SELECT MAX({ROLE_RANK}) FROM attachments a WHERE a.user_id = :u AND a.structure_id = :s
          AND (a.service_id IS NULL OR a.service_id = {ASKED_ID})
          AND {IN_FORCE})                               AS role_rank,
  (SELECT level FROM subscriptions WHERE user_id = :u AND structure_id = :s
          AND space_code = :space AND status = 'validated'
          AND service_id IS NULL)                       AS all_level,
  (SELECT level FROM subscriptions WHERE user_id = :u AND structure_id = :s
          AND space_code = :space AND status = 'validated'
          AND service_id = {ASKED_ID})                  AS service_level,
  EXISTS (SELECT 1 FROM opened_spaces WHERE structure_id = :s AND space_code = :space
          AND service_id IS NULL)                       AS opened_structure,
  EXISTS (SELECT 1 FROM opened_spaces WHERE structure_id = :s AND space_code = :space
          AND service_id = {ASKED_ID})                  AS opened_service
""").bindparams(bindparam("today", type_=Date), bindparam("service", type_=String))

MANAGEMENT_FACTS = text(f"""
SELECT
  (SELECT status FROM users WHERE id = :u)              AS user_status,
  (SELECT status FROM structures WHERE id = :s)         AS structure_status,
  (SELECT MAX({ROLE_RANK}) FROM attachments a WHERE a.user_id = :u AND a.structure_id = :s
          AND {IN_FORCE})                               AS role_rank
""").bindparams(bindparam("today", type_=Date))


def _role(rank: int | None) -> str | None:
    return ROLE_STRENGTH[rank - 1] if rank else None


@dataclass(frozen=True)
class Reference:
    """Decides one question from the tables and pycasbin, with no cache."""

    engine: PolicyEngine

    def decide(self, session: Session, q: Question, today: dt.date) -> tuple[bool, Any]:
        """(allowed, the facts it was decided on, or why there are none)."""
        if q.space is None:
            return self._management(session, q, today)
        return self._space(session, q, today)

    def _management(self, session: Session, q: Question, today: dt.date) -> tuple[bool, Any]:
        if q.action not in MANAGEMENT_ACTIONS:
            return False, "unknown action"
        f = session.execute(
            MANAGEMENT_FACTS, {"u": q.user_id, "s": q.structure_id, "today": today}
        ).one()
        if f.user_status is None or f.structure_status is None:
            return False, "unknown subject or structure"
        # model.conf (1): a role needs an ACTIVE account.
        role = _role(f.role_rank) if f.user_status == "active" else None
        facts = (role or NO_ROLE, q.action, f.structure_status)
        return self.engine.allows(*facts), facts

    def _space(self, session: Session, q: Question, today: dt.date) -> tuple[bool, Any]:
        assert q.space is not None, "a question about a space"
        if q.action not in SPACE_ACTIONS:
            return False, "unknown action"
        f = session.execute(
            SPACE_FACTS,
            {
                "u": q.user_id,
                "s": q.structure_id,
                "space": q.space,
                "service": q.service,
                "today": today,
            },
        ).one()
        if f.user_status is None or f.structure_status is None or f.public_only is None:
            return False, "unknown subject, structure or space"
        if q.service is not None and not f.service_found:
            return False, "unknown service"
        role = _role(f.role_rank)
        sub = SubjectFacts(
            user_status=f.user_status,
            whole=bool(f.whole),
            service=bool(f.on_service),
            all_level=f.all_level or "none",
            service_level=f.service_level or "none",
            role_level=ROLE_DEFAULTS[q.space].get(role, "none") if role else "none",
        )
        obj = SpaceFacts(
            structure_status=f.structure_status,
            structure_kind=f.structure_kind,
            public_only=bool(f.public_only),
            opened_structure=bool(f.opened_structure),
            opened_service=bool(f.opened_service),
            service_status=(
                "none" if q.service is None else "active" if f.service_active else "inactive"
            ),
        )
        return self.engine.space(sub, obj, q.action)[0], (sub, obj)


# --- random worlds, questions and mutations ----------------------------------


def random_world(rnd: random.Random) -> dict[str, Any]:
    """A small world in the shape authz.review.fixtures.load_world reads, dense enough
    that many questions are allowed. Day offsets stay within -3..+3."""
    spaces = [
        *ROLE_DEFAULT_SPACES,
        *rnd.sample([s for s in SPACES if s not in ROLE_DEFAULT_SPACES], 3),
    ]
    structures: dict[str, Any] = {}
    for i in range(rnd.randint(1, 3)):
        services = {
            f"v{j}": {
                "active": rnd.random() < 0.75,
                "opened": rnd.sample(spaces, rnd.randint(0, 2)),
            }
            for j in range(rnd.randint(0, 2))
        }
        structures[f"s{i}"] = {
            "kind": rnd.choice(("public", "private")),
            "status": rnd.choice(("active", "active", "inactive")),
            "opened": rnd.sample(spaces, rnd.randint(1, len(spaces))),
            "services": services,
        }
    users = {f"u{i}": {"status": rnd.choice(USER_STATUSES)} for i in range(rnd.randint(2, 5))}
    attachments: list[dict[str, Any]] = []
    subscriptions: list[dict[str, Any]] = []
    for user in users:
        for name, structure in structures.items():
            scopes = [None, *structure["services"]]
            attached = [s for s in scopes if rnd.random() < (0.9 if s is None else 0.4)]
            for service in attached:
                status = rnd.choice(ATTACHMENT_STATUSES)
                start = rnd.choice((-3, -2, -1, -1, 0, 1))
                principal_free = not any(
                    a["structure"] == name
                    and a["role"] == "principal"
                    and a["status"] == "validated"
                    for a in attachments
                )
                roles = ["secondary", "simple", "technical"]
                if service is None and (principal_free or status != "validated"):
                    roles.append("principal")
                attachments.append(
                    {
                        "user": user,
                        "structure": name,
                        "service": service,
                        "status": status,
                        "role": rnd.choice(roles),
                        "valid_from": start,
                        "valid_until": rnd.choice((None,) * 6 + (start, start + 2)),
                    }
                )
            for space in spaces:
                subscriptions.extend(
                    {
                        "user": user,
                        "structure": name,
                        "service": service,
                        "space": space,
                        "level": rnd.choice(("consult", "modify")),
                        "status": rnd.choice(("validated", "validated", "deactivated")),
                    }
                    for service in rnd.sample(scopes, rnd.randint(0, min(2, len(scopes))))
                )
    return {
        "structures": structures,
        "users": users,
        "attachments": attachments,
        "subscriptions": subscriptions,
    }


@dataclass(frozen=True)
class Snapshot:
    """The ids and codes questions are drawn from, read once per round."""

    users: list[int]
    structures: list[int]
    services: dict[int, list[str]]  # structure id -> service codes
    opened: dict[int, list[str]]  # structure id -> space codes opened anywhere on it
    members: list[tuple[int, int]]  # (user, structure) with an attachment of any status

    @classmethod
    def read(cls, session: Session) -> Snapshot:
        services: dict[int, list[str]] = {}
        for sid, code in session.execute(
            select(Service.structure_id, Service.code).order_by(Service.id)
        ):
            services.setdefault(sid, []).append(code)
        opened: dict[int, list[str]] = {}
        for sid, code in session.execute(
            select(OpenedSpace.structure_id, OpenedSpace.space_code).order_by(OpenedSpace.id)
        ):
            opened.setdefault(sid, []).append(code)
        members = session.execute(
            select(Attachment.user_id, Attachment.structure_id)
            .distinct()
            .order_by(Attachment.user_id, Attachment.structure_id)
        ).all()
        return cls(
            users=list(session.scalars(select(User.id).order_by(User.id))),
            structures=list(session.scalars(select(Structure.id).order_by(Structure.id))),
            services=services,
            opened=opened,
            members=[(user_id, structure_id) for user_id, structure_id in members],
        )


def random_question(
    rnd: random.Random, snap: Snapshot, pairs: list[tuple[int, int]] | None = None
) -> Question:
    """A question about the world (mostly about attached users; now and then
    about an unknown user, service, space or action), or about one of `pairs`."""
    if pairs or (snap.members and rnd.random() < 0.7):
        user_id, structure_id = rnd.choice(pairs or snap.members)
    else:
        user_id, structure_id = rnd.choice(snap.users), rnd.choice(snap.structures)
        if rnd.random() < 0.02:
            user_id += 10_000
    if rnd.random() < 0.25:
        action = rnd.choice(MANAGEMENT_ACTIONS) if rnd.random() > 0.02 else "structure.delete"
        return Question(user_id, structure_id, None, action)
    service = rnd.choice([None, None, *snap.services.get(structure_id, [])])
    if rnd.random() < 0.02:
        service = "no-such-service"
    space = rnd.choice(
        [*snap.opened.get(structure_id, []), *ROLE_DEFAULT_SPACES, rnd.choice(SPACES)]
    )
    if rnd.random() < 0.02:
        space = "no_such_space"
    action = rnd.choice(SPACE_ACTIONS) if rnd.random() > 0.02 else "delete"
    return Question(user_id, structure_id, space, action, service)


Scope = dict[str, Any]


def _pick(rnd: random.Random, session: Session, model: type[Any]) -> Any:
    rows = list(session.scalars(select(model).order_by(model.id)))
    return rnd.choice(rows) if rows else None


def _principal_taken(session: Session, structure_id: int, but: int | None = None) -> bool:
    return bool(
        session.scalar(
            select(func.count())
            .select_from(Attachment)
            .where(
                Attachment.structure_id == structure_id,
                Attachment.role == "principal",
                Attachment.status == "validated",
                Attachment.id != (but or 0),
            )
        )
    )


def mutate_user(session: Session, rnd: random.Random, today: dt.date) -> Scope:
    user = _pick(rnd, session, User)
    user.status = rnd.choice([s for s in USER_STATUSES if s != user.status])
    return {"users": [user.id]}


def mutate_attachment(session: Session, rnd: random.Random, today: dt.date) -> Scope:
    """Change the status, dates or role of an attachment, or delete one."""
    att = _pick(rnd, session, Attachment)
    if att is None:
        return mutate_user(session, rnd, today)
    change = rnd.choice(("status", "dates", "role", "delete"))
    if change == "status":
        forbidden = {att.status}
        if att.role == "principal" and _principal_taken(session, att.structure_id, att.id):
            forbidden.add("validated")  # one validated principal per structure
        att.status = rnd.choice([s for s in ATTACHMENT_STATUSES if s not in forbidden])
    elif change == "dates":
        att.valid_from = today + dt.timedelta(days=rnd.randint(-3, 2))
        att.valid_until = rnd.choice((None, att.valid_from + dt.timedelta(days=rnd.randint(0, 2))))
    elif change == "role":
        att.role = rnd.choice([r for r in ("secondary", "simple", "technical") if r != att.role])
    else:
        session.delete(att)
    return {"memberships": [(att.user_id, att.structure_id)]}


def add_attachment(session: Session, rnd: random.Random, today: dt.date) -> Scope:
    user, structure = _pick(rnd, session, User), _pick(rnd, session, Structure)
    service = rnd.choice(
        [
            None,
            *session.scalars(
                select(Service.id).where(Service.structure_id == structure.id).order_by(Service.id)
            ),
        ]
    )
    exists = session.scalar(
        select(Attachment.id).where(
            Attachment.user_id == user.id,
            Attachment.structure_id == structure.id,
            Attachment.service_id.is_(None)
            if service is None
            else Attachment.service_id == service,
        )
    )
    if exists:
        return mutate_attachment(session, rnd, today)
    role = (
        "principal"
        if service is None and not _principal_taken(session, structure.id)
        else rnd.choice(("secondary", "simple", "technical"))
    )
    session.add(
        Attachment(
            user_id=user.id,
            structure_id=structure.id,
            service_id=service,
            role=role,
            status="validated",
            valid_from=today - dt.timedelta(days=rnd.randint(0, 2)),
        )
    )
    return {"memberships": [(user.id, structure.id)]}


def mutate_subscription(session: Session, rnd: random.Random, today: dt.date) -> Scope:
    """Change the level or status of a subscription, or delete one."""
    sub = _pick(rnd, session, Subscription)
    if sub is None:
        return add_subscription(session, rnd, today)
    change = rnd.choice(("level", "status", "delete"))
    if change == "level":
        sub.level = "consult" if sub.level == "modify" else "modify"
    elif change == "status":
        sub.status = "validated" if sub.status == "deactivated" else "deactivated"
    else:
        session.delete(sub)
    return {"memberships": [(sub.user_id, sub.structure_id)]}


def add_subscription(session: Session, rnd: random.Random, today: dt.date) -> Scope:
    user, structure = _pick(rnd, session, User), _pick(rnd, session, Structure)
    service = rnd.choice(
        [
            None,
            *session.scalars(
                select(Service.id).where(Service.structure_id == structure.id).order_by(Service.id)
            ),
        ]
    )
    space = rnd.choice(SPACES)
    exists = session.scalar(
        select(Subscription.id).where(
            Subscription.user_id == user.id,
            Subscription.structure_id == structure.id,
            Subscription.space_code == space,
            Subscription.service_id.is_(None)
            if service is None
            else Subscription.service_id == service,
        )
    )
    if exists:
        return mutate_subscription(session, rnd, today)
    session.add(
        Subscription(
            user_id=user.id,
            structure_id=structure.id,
            service_id=service,
            space_code=space,
            level=rnd.choice(("consult", "modify")),
            status="validated",
        )
    )
    return {"memberships": [(user.id, structure.id)]}


def mutate_structure(session: Session, rnd: random.Random, today: dt.date) -> Scope:
    """Toggle the structure's status or a service's active flag, add a service,
    or open / close a space on the structure or one of its services."""
    structure = _pick(rnd, session, Structure)
    services = list(
        session.scalars(
            select(Service).where(Service.structure_id == structure.id).order_by(Service.id)
        )
    )
    change = rnd.choice(("status", "service", "new service", "open", "close"))
    if change == "service" and not services:
        change = "new service"
    if change == "status":
        structure.status = "inactive" if structure.status == "active" else "active"
    elif change == "service":
        service = rnd.choice(services)
        service.active = not service.active
    elif change == "new service":
        session.add(
            Service(structure_id=structure.id, code=f"n{len(services)}", label="new", active=True)
        )
    elif change == "open":
        service_id = rnd.choice([None, *(s.id for s in services)])
        space = rnd.choice(SPACES)
        if not session.scalar(
            select(OpenedSpace.id).where(
                OpenedSpace.structure_id == structure.id,
                OpenedSpace.space_code == space,
                OpenedSpace.service_id.is_(None)
                if service_id is None
                else OpenedSpace.service_id == service_id,
            )
        ):
            session.add(
                OpenedSpace(structure_id=structure.id, service_id=service_id, space_code=space)
            )
    else:
        opened = list(
            session.scalars(
                select(OpenedSpace)
                .where(OpenedSpace.structure_id == structure.id)
                .order_by(OpenedSpace.id)
            )
        )
        if opened:
            session.delete(rnd.choice(opened))
    return {"structures": [structure.id]}


class Mutation(Protocol):
    """A random change to the world, saying what it touched."""

    __name__: str

    def __call__(self, session: Session, rnd: random.Random, today: dt.date) -> Scope: ...


MUTATIONS: tuple[Mutation, ...] = (
    mutate_user,
    mutate_attachment,
    mutate_attachment,
    add_attachment,
    mutate_subscription,
    mutate_subscription,
    add_subscription,
    mutate_structure,
    mutate_structure,
)


# --- the harness ----------------------------------------------------------------


class FullReloads:
    """Counts the decider's full reloads (Decider.full_reloads: everything may
    have changed; the new index is made in the background, see
    test_index_snapshots.py)."""

    def __init__(self, decider: Decider) -> None:
        self._decider = decider
        self._start = decider.full_reloads

    @property
    def count(self) -> int:
        return self._decider.full_reloads - self._start


@dataclass
class Harness:
    """The service's decider, the reference, and counts of what was asked."""

    rt: Runtime
    reference: Reference
    today: dt.date
    asked: int = 0
    allowed: int = 0

    def questions(
        self, rnd: random.Random, touched: list[tuple[int, int]] | None = None
    ) -> list[Question]:
        """Random questions about the world now in the database, plus some about
        the (user, structure) pairs a mutation `touched`."""
        with Session(self.rt.engine) as session:
            snap = Snapshot.read(session)
        return [random_question(rnd, snap) for _ in range(QUESTIONS_PER_ROUND)] + [
            random_question(rnd, snap, touched)
            for _ in range(QUESTIONS_PER_ROUND // 3 if touched else 0)
        ]

    def compare(self, questions: list[Question], shift: int, describe: Callable[[], str]) -> None:
        """The fast path and the reference must agree on every question, asked on
        `today` shifted by `shift` days; `describe` tells the world on failure."""
        decider, day = self.rt.decider, self.today + dt.timedelta(days=shift)
        wrong = []
        with Session(self.rt.engine) as session:
            for q in questions:
                fast = decider.decide(q, today=day)
                expected, facts = self.reference.decide(session, q, day)
                self.asked += 1
                self.allowed += expected
                if fast.allowed != expected:
                    wrong.append(
                        f"{q} on {day}: fast={fast.allowed} ({fast.rule or fast.reason})"
                        f" reference={expected} facts={facts}"
                    )
        assert not wrong, f"{describe()}\n{len(wrong)} disagreement(s):\n" + "\n".join(wrong[:10])

    def same_facts(self) -> None:
        """Once a background rebuild is in, the decider's index holds the
        facts the dict index loads from the tables (compact: its snapshot
        and the keys reloaded into its overlay since)."""
        decider = self.rt.decider
        assert decider.wait_rebuilt()
        decider.ensure_fresh()
        assert decider.index.compact
        assert_same_facts(decider.index, dict_index(decider.db_engine))

    def commit(self, change: Callable[[Session], Scope | None]) -> Scope:
        """Run `change` in one transaction, with the revision bump naming the scope
        it returns (None: bump without naming anything); return that scope."""
        with self.rt.sessions.begin() as session:
            scope = change(session) or {}
            bump_revision(session, **scope)
        return scope

    def reset(self, world: dict[str, Any]) -> None:
        """Replace the database's world with `world` (the removal is committed
        without a scope, the load with the scope load_world names)."""

        def wipe(session: Session) -> None:
            for model in (Subscription, Attachment, OpenedSpace, Service, Structure, User):
                session.execute(delete(model))

        self.commit(wipe)
        with self.rt.sessions.begin() as session:
            load_world(session, world, today=self.today)


@pytest.fixture
def harness(rt: Runtime) -> Harness:
    return Harness(rt=rt, reference=Reference(PolicyEngine(rt.policies)), today=roles.today())


def _describe(seed: int, number: int, world: dict[str, Any], applied: list[str]) -> str:
    """What a failure prints: the seed, the world and the mutations applied so far."""
    return (
        f"seed {seed}, world {number}:\n{yaml.safe_dump(world, sort_keys=False)}"
        f"mutations: {applied}"
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_fast_path_agrees_with_the_reference_on_random_worlds_and_mutations(
    harness: Harness, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rnd = random.Random(seed)
    decider = harness.rt.decider
    reloads = FullReloads(decider)
    for number in range(WORLDS_PER_SEED):
        world = random_world(rnd)
        applied: list[str] = []
        describe = partial(_describe, seed, number, world, applied)
        harness.reset(world)
        decider.ensure_fresh()
        harness.compare(harness.questions(rnd), rnd.choice((0, 0, -1, 1)), describe)
        reloads_before = reloads.count
        for _ in range(MUTATION_ROUNDS):
            touched: list[tuple[int, int]] = []
            for _ in range(rnd.randint(1, 3)):
                mutation = rnd.choice(MUTATIONS)
                scope = harness.commit(partial(mutation, rnd=rnd, today=harness.today))
                applied.append(f"{mutation.__name__} {scope}")
                touched += scope.get("memberships", [])
            decider.ensure_fresh()
            harness.compare(harness.questions(rnd, touched), rnd.choice((0, 0, -1, 1)), describe)
        harness.same_facts()
        assert reloads.count == reloads_before, "scoped changes must not reload everything"
    assert harness.asked > 2_000
    assert 0.05 < harness.allowed / harness.asked < 0.95, "worlds too sparse or too dense"


SMALL_WORLD: dict[str, Any] = {
    "structures": {
        "acme": {
            "kind": "private",
            "opened": ["issued_invoices"],
            "services": {"sales": {"active": True}},
        }
    },
    "users": {"sam": {"status": "active"}, "ada": {"status": "active"}},
    "attachments": [
        {"user": "sam", "structure": "acme", "role": "simple"},
        {"user": "ada", "structure": "acme", "role": "principal"},
    ],
    "subscriptions": [
        {"user": "sam", "structure": "acme", "space": "issued_invoices", "level": "modify"}
    ],
}


def _small_world_questions(harness: Harness) -> list[Question]:
    """Every question about the small world's users on acme, with and without its
    service, for every space and action, and every management action."""
    with Session(harness.rt.engine) as session:
        users = list(session.scalars(select(User.id).order_by(User.id)))
        acme = session.scalars(select(Structure.id)).one()
    return [
        Question(u, acme, space, action, service)
        for u in users
        for service in (None, "sales")
        for space in SPACES
        for action in SPACE_ACTIONS
    ] + [Question(u, acme, None, action) for u in users for action in MANAGEMENT_ACTIONS]


def _revoke_everything(session: Session) -> None:
    """Deactivate sam's account, the subscription and the service, close the space."""
    session.scalars(select(User).where(User.login_email.like("sam@%"))).one().status = "inactive"
    for sub in session.scalars(select(Subscription)):
        sub.status = "deactivated"
    for service in session.scalars(select(Service)):
        service.active = False
    session.execute(delete(OpenedSpace))


def test_a_change_committed_without_naming_its_scope_reloads_everything(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    decider = harness.rt.decider
    harness.reset(SMALL_WORLD)
    decider.ensure_fresh()
    assert decider.wait_rebuilt()  # the reset's full reload: in, before what follows
    questions = _small_world_questions(harness)
    harness.compare(questions, 0, lambda: "small world")
    assert harness.allowed > 0
    reloads = FullReloads(decider)
    harness.commit(_revoke_everything)  # bump_revision() with no scope
    decider.ensure_fresh()
    assert reloads.count == 1
    harness.asked = harness.allowed = 0
    harness.compare(questions, 0, lambda: "after an unscoped change")
    assert not any(decider.decide(q).allowed for q in questions if q.space == "issued_invoices")


def test_a_change_log_that_does_not_reach_back_reloads_everything(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    decider = harness.rt.decider
    harness.reset(SMALL_WORLD)
    decider.ensure_fresh()
    assert decider.wait_rebuilt()  # the reset's full reload: in, before what follows
    questions = _small_world_questions(harness)
    with Session(harness.rt.engine) as session:
        sam, ada = (
            session.scalars(select(User.id).where(User.login_email.like(f"{name}@%"))).one()
            for name in ("sam", "ada")
        )
        acme = session.scalars(select(Structure.id)).one()
    consult = Question(sam, acme, "issued_invoices", "consult")
    assert decider.decide(consult).allowed

    def close_every_space(session: Session) -> Scope:
        session.execute(delete(OpenedSpace))
        return {"structures": [acme]}

    def deactivate_ada(session: Session) -> Scope:
        session.get_one(User, ada).status = "inactive"
        return {"users": [ada]}

    harness.commit(close_every_space)
    harness.commit(deactivate_ada)
    # The log is pruned past the decider's revision: the first change is gone.
    with harness.rt.sessions.begin() as session:
        session.execute(delete(PolicyChange).where(PolicyChange.revision <= decider.revision + 1))
    reloads = FullReloads(decider)
    decider.ensure_fresh()
    assert reloads.count == 1
    harness.compare(questions, 0, lambda: "after a pruned change log")
    assert not decider.decide(consult).allowed


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_rights_are_what_deciding_every_question_gives(harness: Harness, seed: int) -> None:
    """Decider.rights, member_rights and management_rights (the review tools' enumeration:
    a membership's facts read once per scope, the answers on spaces without
    a subscription shared per group) give exactly what decide() allows, in
    its order and with its rules, for every user and structure of random
    worlds, on three days: on the index after a reload, on the compact index,
    and on its overlay after mutations."""
    rnd = random.Random(seed)
    decider = harness.rt.decider
    spaces = [space.code for space in decider.policy.policies.spaces]
    compared = allowed = 0
    for _ in range(8):
        harness.reset(random_world(rnd))
        decider.ensure_fresh()
        for step in ("reloaded", "compact", "mutated"):
            if step == "compact":
                harness.same_facts()
            if step == "mutated":
                for _ in range(4):
                    harness.commit(partial(rnd.choice(MUTATIONS), rnd=rnd, today=harness.today))
                decider.ensure_fresh()
            with Session(harness.rt.engine) as session:
                snap = Snapshot.read(session)
            for structure_id in snap.structures:
                day = harness.today + dt.timedelta(days=rnd.choice((0, -2, 2)))
                assert list(decider.member_rights(structure_id, day)) == [
                    (
                        user_id,
                        decider.role_of(user_id, structure_id, day),
                        decider.rights(user_id, structure_id, day),
                    )
                    for user_id in decider.members_of(structure_id)
                ]
                for user_id in [*snap.users, max(snap.users, default=0) + 1]:
                    expected = []
                    for service in decider.scopes(structure_id):
                        for space in spaces:
                            for action in SPACE_ACTIONS:
                                q = Question(user_id, structure_id, space, action, service)
                                d = decider.decide(q, today=day)
                                if d.allowed:
                                    expected.append((service, space, action, d.rule))
                    found = decider.rights(user_id, structure_id, day)
                    assert found == expected, (step, user_id, structure_id, day)
                    managed = {
                        action
                        for action in MANAGEMENT_ACTIONS
                        if decider.decide(
                            Question(user_id, structure_id, None, action), today=day
                        ).allowed
                    }
                    assert decider.management_rights(user_id, structure_id, day) == managed
                    compared += 1
                    allowed += bool(expected)
    assert compared > 80 and 0 < allowed < compared


def _changed_policies(target: Path) -> Path:
    """policies/ with creation no longer allowed by the modify level but
    modification allowed by the consult level, the
    simple role's defaults dropped and a secondary given modify on issued
    invoices by default: space and role-default decisions change both ways."""
    shutil.copytree(ROOT / "policies", target, ignore=shutil.ignore_patterns("tests"))
    levels = target / "levels.csv"
    levels.write_text(
        levels.read_text(encoding="utf-8").replace(
            "p2, modify, create, active\n",
            "p2, consult, modify, active\np2, consult, modify, inactive\n",
        ),
        encoding="utf-8",
    )
    catalogue = yaml.safe_load((target / "spaces.yaml").read_text(encoding="utf-8"))
    for space in catalogue["spaces"]:
        space["granted_by_default"].pop("simple", None)
        if space["code"] == "issued_invoices":
            space["granted_by_default"]["secondary"] = "modify"
    (target / "spaces.yaml").write_text(yaml.safe_dump(catalogue), encoding="utf-8")
    return target


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_the_policy_diff_is_every_question_asked_of_both_policies(
    seed: int, tmp_path: Path
) -> None:
    """policytest.diff_world (which compares what each side's Decider.rights
    enumerates) lists exactly, and in the same order, the decisions that
    differ when every question on every user and structure of a random
    world is asked of the old and the new policy files in turn."""
    rnd = random.Random(seed)
    new_dir = _changed_policies(tmp_path / "new")
    denied = allowed = 0
    for _ in range(3):
        world = random_world(rnd)
        found = diff_world(ROOT / "policies", new_dir, world)
        with world_runtime(world, ROOT / "policies") as (rt, ids):
            old = rt.decider
            new = Decider(PolicyEngine(load_policies(new_dir)), rt.engine)
            new.share_index(old)
            names = {v: k for k, v in ids.users.items()}
            codes = {v: k for k, v in ids.structures.items()}
            spaces = sorted({s.code for d in (old, new) for s in d.policy.policies.spaces})
            actions = sorted({*old.policy.policies.actions, *new.policy.policies.actions})
            expected = []
            for user_id in ids.users.values():
                for structure_id in ids.structures.values():
                    questions = [Question(user_id, structure_id, None, a) for a in actions] + [
                        Question(user_id, structure_id, space, a, service)
                        for service in old.scopes(structure_id)
                        for space in spaces
                        for a in SPACE_ACTIONS
                    ]
                    for q in questions:
                        before = old.decide(q, today=roles.today()).allowed
                        after = new.decide(q, today=roles.today()).allowed
                        if before != after:
                            expected.append(
                                Change(
                                    names[user_id],
                                    codes[structure_id],
                                    q.service,
                                    q.space,
                                    q.action,
                                    before,
                                    after,
                                )
                            )
        assert found == expected
        denied += sum(c.old for c in expected)
        allowed += sum(c.new for c in expected)
    assert denied > 0 and allowed > 0


def test_kept_matchers_answer_as_pycasbin_parsing_each_time() -> None:
    """PolicyEngine keeps each parsed matcher (policy._Enforcer): on random
    facts, from two threads, it answers as a stock casbin.Enforcer on the
    same files (which parses the matcher on every call), row included, and
    parses each matcher once per thread."""
    policies = load_policies(ROOT / "policies")
    engine = PolicyEngine(policies)
    stock = casbin.Enforcer(
        casbin.Enforcer.new_model(text=policies.files["model.conf"]),
        FileAdapter(str(ROOT / "policies" / "levels.csv")),
    )
    spaces = stock.new_enforce_context("2")
    rnd = random.Random(7)
    levels = ("none", "consult", "modify")
    asked = [
        (
            SubjectFacts(
                rnd.choice(("pending", "active", "inactive", "closed")),
                rnd.random() < 0.7,
                rnd.random() < 0.3,
                rnd.choice(levels),
                rnd.choice(levels),
                rnd.choice(levels),
            ),
            SpaceFacts(
                rnd.choice(("active", "inactive")),
                rnd.choice(("public", "private")),
                rnd.random() < 0.3,
                rnd.random() < 0.7,
                rnd.random() < 0.3,
                rnd.choice(("none", "active", "inactive")),
            ),
            rnd.choice(SPACE_ACTIONS),
        )
        for _ in range(400)
    ]
    expected = [stock.enforce_ex(spaces, sub, obj, act) for sub, obj, act in asked]
    answers: dict[str, list[tuple[bool, list[str]]]] = {}

    def ask(name: str) -> None:
        answers[name] = [engine.space(sub, obj, act) for sub, obj, act in asked]

    threads = [threading.Thread(target=ask, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    want = [(bool(allowed), list(row or [])) for allowed, row in expected]
    assert answers["one"] == want and answers["two"] == want
    assert 0 < sum(allowed for allowed, _ in want) < len(want)
    assert engine.parsed_matchers() == 2  # the space matcher, once in each thread
