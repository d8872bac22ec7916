"""Policy tests as data, decision explanations and policy diffs (issue 6).

* **Assertion files** (policies/tests/*.yaml) name a fixture world (the format
  of authz/review/fixtures.py) and what the engine must decide in it::

      world: {...}                  # or  world_from: decisions.yaml  (a sibling file's world)
      rows:                         # optional: single decisions
        - {user, structure, service?, space?, action, expect: allow | deny, why}
      exactly_subjects:             # optional: "exactly these users may ..."
        - {structure, service?, space?, action, users: [name, ...], why?}
      exactly_actions:              # optional: "this user may exactly these actions ..."
        - {user, structure, service?, space?, actions: [action, ...], why?}

  `exactly_subjects` asks every user of the world; `exactly_actions` asks the
  three space actions when `space` is given, else every management action of
  roles.yaml. `run_files` loads each world into a throwaway migrated SQLite
  database, decides with the policy files under test, and reports failures
  (with the explanation of the actual decision) and coverage: the levels.csv
  `p2` rows and roles.yaml `p` rows no passing allow assertion exercised.
* `explain` turns a decision into the chain that allowed it, or the first
  missing link that denied it.
* `diff_world` / `diff_database` evaluate every question of a world (or of a
  database) under two versions of the policy files and list what changes.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models import Attachment, Service, Structure, Subscription, User

from .. import db, roles
from ..config import load_settings
from ..engine.decisions import Decider, Decision, Question, Right, gather
from ..engine.policy import SPACE_ACTIONS, PolicyEngine, load_policies, management_rules
from ..engine.snapshots import SnapshotStore
from ..runtime import Runtime, build_runtime, close_runtime, sync_catalogue
from .fixtures import EXPECTATIONS, ROW_FIELDS, WorldError, WorldIds, load_world, question

FILE_KEYS = frozenset({"world", "world_from", "rows", "exactly_subjects", "exactly_actions"})
SUBJECTS_FIELDS = frozenset({"structure", "service", "space", "action", "users", "why"})
ACTIONS_FIELDS = frozenset({"user", "structure", "service", "space", "actions", "why"})
MATCHER_SPACE = "policies/model.conf [matchers] m2"
MATCHER_MANAGEMENT = "policies/model.conf [matchers] m"


# --- reading assertion files ----------------------------------------------------


@dataclass(frozen=True)
class AssertionFile:
    """One assertion file, read and checked."""

    path: Path
    world: dict[str, Any]
    rows: list[dict[str, Any]]
    exactly_subjects: list[dict[str, Any]]
    exactly_actions: list[dict[str, Any]]


def read_assertions(path: str | Path) -> AssertionFile:
    """Read an assertion file (see the module docstring). Raises WorldError on
    a malformed file."""
    path = Path(path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or set(doc) - FILE_KEYS:
        raise WorldError(
            f"{path}: expected a mapping with keys among {', '.join(sorted(FILE_KEYS))}"
        )
    if ("world" in doc) == ("world_from" in doc):
        raise WorldError(f"{path}: give exactly one of `world` and `world_from`")
    if "world_from" in doc:
        source = yaml.safe_load((path.parent / doc["world_from"]).read_text(encoding="utf-8"))
        world = dict(source["world"] or {})
    else:
        world = dict(doc["world"] or {})
    rows = list(doc.get("rows") or [])
    for number, row in enumerate(rows, start=1):
        _check(
            row,
            ROW_FIELDS,
            {"user", "structure", "action", "expect", "why"},
            f"{path}: row {number}",
        )
        if row["expect"] not in EXPECTATIONS:
            raise WorldError(f"{path}: row {number}: expect must be allow or deny")
    subjects = list(doc.get("exactly_subjects") or [])
    for number, item in enumerate(subjects, start=1):
        _check(
            item,
            SUBJECTS_FIELDS,
            {"structure", "action", "users"},
            f"{path}: exactly_subjects {number}",
        )
    actions = list(doc.get("exactly_actions") or [])
    for number, item in enumerate(actions, start=1):
        _check(
            item,
            ACTIONS_FIELDS,
            {"user", "structure", "actions"},
            f"{path}: exactly_actions {number}",
        )
    return AssertionFile(
        path=path, world=world, rows=rows, exactly_subjects=subjects, exactly_actions=actions
    )


def _check(item: Any, allowed: frozenset[str], required: set[str], where: str) -> None:
    if not isinstance(item, Mapping):
        raise WorldError(f"{where}: expected a mapping, got {item!r}")
    unknown = set(item) - allowed
    missing = required - set(item)
    if unknown or missing:
        raise WorldError(f"{where}: unknown field(s) {sorted(unknown)}, missing {sorted(missing)}")


# --- a world in a throwaway database ----------------------------------------------


@contextmanager
def world_runtime(
    world: Mapping[str, Any], policy_dir: str | Path | None = None
) -> Iterator[tuple[Runtime, WorldIds]]:
    """A Runtime on a fresh migrated SQLite database in a temporary directory,
    deciding with the policy files of `policy_dir` (default: the settings'),
    with `world` loaded and the decider's index at its revision."""
    with tempfile.TemporaryDirectory(prefix="authz-policy-test-") as tmp:
        overrides: dict[str, Any] = {
            "database_url": f"sqlite:///{Path(tmp) / 'authz.db'}",
            "var_dir": str(Path(tmp) / "var"),
            "mail_background": False,
        }
        if policy_dir is not None:
            overrides["policy_dir"] = str(policy_dir)
        settings = load_settings(overrides)
        engine = db.make_engine(settings)
        db.upgrade(engine)
        rt = build_runtime(settings, engine=engine)
        try:
            sync_catalogue(rt)
            with rt.sessions() as session:
                ids = load_world(session, world)
                session.commit()
            rt.decider.load()
            yield rt, ids
        finally:
            close_runtime(rt)


# --- running assertions ------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One assertion the engine does not satisfy."""

    what: str
    expected: str
    actual: str
    explanation: str


@dataclass
class FileReport:
    """The outcome of one assertion file."""

    path: Path
    checked: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class Coverage:
    """The policy rows a passing allow assertion exercised, out of all of them."""

    level_rows: list[tuple[str, ...]]
    role_rows: list[tuple[str, ...]]
    exercised: set[tuple[str, ...]] = field(default_factory=set)

    @property
    def unexercised_levels(self) -> list[tuple[str, ...]]:
        return [r for r in self.level_rows if ("p2", *r) not in self.exercised]

    @property
    def unexercised_roles(self) -> list[tuple[str, ...]]:
        return [r for r in self.role_rows if ("p", *r) not in self.exercised]


@dataclass
class RunReport:
    """Every file's outcome and the coverage over all of them."""

    files: list[FileReport]
    coverage: Coverage

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.files)


class _Asker:
    """Decides the questions of one loaded world and records what allows covered."""

    def __init__(self, rt: Runtime, ids: WorldIds, coverage: Coverage) -> None:
        self.rt, self.ids, self.coverage = rt, ids, coverage
        self.today = roles.today()

    def decide(self, item: Mapping[str, Any], action: str, user: str) -> Decision:
        q = question({**item, "user": user, "action": action}, self.ids)
        return self.rt.decider.decide(q, today=self.today, explain=True)

    def record(self, item: Mapping[str, Any], action: str, user: str, decision: Decision) -> None:
        """Note the policy row behind an allow that an assertion expected."""
        if not decision.allowed:
            return
        if item.get("space") is not None:
            if decision.explanation is not None:  # always, for an explained allow
                self.coverage.exercised.add(tuple(decision.explanation["levels.csv"]))
            return
        q = question({**item, "user": user, "action": action}, self.ids)
        role = self.rt.decider.role_of(q.user_id, q.structure_id, self.today)
        status = self.rt.decider.index.structures[q.structure_id].status
        self.coverage.exercised.add(("p", str(role), action, status))

    def explain(self, item: Mapping[str, Any], action: str, user: str) -> str:
        q = question({**item, "user": user, "action": action}, self.ids)
        return explain(
            self.rt, q.user_id, q.structure_id, q.space, q.action, q.service, today=self.today
        )


def _label(item: Mapping[str, Any], user: str | None = None, action: str | None = None) -> str:
    scope = item["structure"] + (f"/{item['service']}" if item.get("service") else "")
    what = f"{item['space']}:" if item.get("space") else ""
    return f"{user or item.get('user', '*')}@{scope}:{what}{action or item.get('action', '*')}"


def run_file(
    assertions: AssertionFile, coverage: Coverage, policy_dir: str | Path | None = None
) -> FileReport:
    """Check every assertion of one file; exercised rules go into `coverage`."""
    report = FileReport(path=assertions.path)
    with world_runtime(assertions.world, policy_dir) as (rt, ids):
        asker = _Asker(rt, ids, coverage)
        for row in assertions.rows:
            report.checked += 1
            decision = asker.decide(row, row["action"], row["user"])
            actual = "allow" if decision.allowed else "deny"
            if actual != row["expect"]:
                report.failures.append(
                    Failure(
                        f"{_label(row)} ({row['why']})",
                        row["expect"],
                        actual,
                        asker.explain(row, row["action"], row["user"]),
                    )
                )
            elif row["expect"] == "allow":
                asker.record(row, row["action"], row["user"], decision)
        for item in assertions.exactly_subjects:
            report.checked += 1
            decisions = {user: asker.decide(item, item["action"], user) for user in ids.users}
            _compare_sets(
                report,
                asker,
                item,
                f"exactly these users: {_label(item, '*')}",
                set(item["users"]),
                decisions,
                partial(_question, action=item["action"]),
            )
        for item in assertions.exactly_actions:
            report.checked += 1
            universe = (
                SPACE_ACTIONS if item.get("space") is not None else tuple(rt.policies.actions)
            )
            decisions = {action: asker.decide(item, action, item["user"]) for action in universe}
            _compare_sets(
                report,
                asker,
                item,
                f"exactly these actions: {_label(item, action='*')}",
                set(item["actions"]),
                decisions,
                partial(_question, item["user"]),
            )
    return report


def _question(user: str, action: str) -> tuple[str, str]:
    return user, action


def _compare_sets(
    report: FileReport,
    asker: _Asker,
    item: Mapping[str, Any],
    what: str,
    expected: set[str],
    decisions: Mapping[str, Decision],
    question_of: Callable[[str], tuple[str, str]],
) -> None:
    """A set assertion: the allowed members must be exactly `expected`. Each
    member on the wrong side is one failure, explained."""
    unknown = expected - set(decisions)
    if unknown:
        raise WorldError(f"{what}: unknown name(s) {sorted(unknown)}")
    why = f" ({item['why']})" if item.get("why") else ""
    for member, decision in decisions.items():
        user, action = question_of(member)
        if decision.allowed and member in expected:
            asker.record(item, action, user, decision)
        elif decision.allowed != (member in expected):
            report.failures.append(
                Failure(
                    f"{what}{why}: {member}",
                    "allow" if member in expected else "deny",
                    "allow" if decision.allowed else "deny",
                    asker.explain(item, action, user),
                )
            )


def default_files(policy_dir: str | Path) -> list[Path]:
    """The assertion files shipped with the policy files: tests/*.yaml."""
    return sorted((Path(policy_dir) / "tests").glob("*.yaml"))


def run_files(paths: Sequence[str | Path], policy_dir: str | Path | None = None) -> RunReport:
    """Run assertion files against the policy files of `policy_dir` (default:
    the settings'), with the coverage over all of them."""
    engine = PolicyEngine(load_policies(policy_dir or load_settings().policy_dir))
    coverage = Coverage(
        level_rows=[tuple(r) for r in engine.level_rows()],
        role_rows=[tuple(r) for r in management_rules(engine.policies)],
    )
    files = [run_file(read_assertions(path), coverage, policy_dir) for path in paths]
    return RunReport(files=files, coverage=coverage)


# --- explanations --------------------------------------------------------------------


def explain(
    rt: Runtime,
    user_id: int,
    structure_id: int,
    space: str | None,
    action: str,
    service: str | None = None,
    *,
    today: dt.date | None = None,
) -> str:
    """The decision on this question at the index's current revision, as a
    readable chain: facts, attachment (role, dates), subscription or role
    default and its level, the policy row and the matcher that allowed it; or
    the first missing link that denied it. `space` None asks a management
    action on the structure."""
    today = today or roles.today()
    q = Question(user_id, structure_id, space, action, service)
    decider = rt.decider
    scope = f"service {service}" if service else "whole structure"
    asked = f"{space}: {action}" if space else f"management action {action}"
    with decider.reading(), rt.read_sessions() as session:
        decision = decider.decide(q, today=today, explain=True)
        lines = [
            f"user {user_id}, structure {structure_id} ({scope}), {asked}",
            f"decision: {'ALLOW' if decision.allowed else 'DENY'} (revision {decision.revision})",
        ]
        if space is None:
            lines += _management_chain(session, decider, q, decision, today)
        else:
            lines += _space_chain(session, decider, q, decision, today)
    return "\n".join(lines)


def _attachment_line(session: Session, attachment_id: int | None) -> str:
    att = session.get(Attachment, attachment_id) if attachment_id is not None else None
    if att is None:
        return "attachment: none in force covering this scope"
    where = (
        "whole structure"
        if att.service_id is None
        else f"service {session.get_one(Service, att.service_id).code}"
    )
    return (
        f"attachment {att.id}: role {att.role}, {att.status}, {where}, valid from "
        f"{att.valid_from} until {att.valid_until or 'no end date'}"
    )


def _space_chain(
    session: Session, decider: Decider, q: Question, decision: Decision, today: dt.date
) -> list[str]:
    explanation = decision.explanation
    if explanation is None:  # the question could not even be put
        return [f"  first missing link: {decision.reason}"]
    facts = explanation["facts"]
    lines = [
        f"  facts: subject {_flat(facts['subject'])}",
        f"         resource {_flat(facts['resource'])}",
    ]
    if not decision.allowed:
        return [
            *lines,
            f"  first missing link: {decision.reason}",
            f"  model: {explanation['model']} (no levels.csv row matches)",
        ]
    g = gather(decider.index, {s.code: s for s in decider.policy.policies.spaces}, q, today)
    if isinstance(g, str):  # the facts changed since the decision was taken
        return [*lines, f"  first missing link now: {g}"]
    level = explanation["levels.csv"][1]
    lines.append(f"  1. {_attachment_line(session, explanation['attachment_id'])}")
    packed = (
        g.all_subscription
        if g.key[3] == level and g.all_subscription is not None
        else g.service_subscription
        if g.key[4] == level
        else None
    )
    if packed is not None:
        sub = session.get_one(Subscription, packed >> 2)
        covers = (
            "all services"
            if sub.service_id is None
            else f"service {session.get_one(Service, sub.service_id).code}"
        )
        lines.append(
            f"  2. subscription {sub.id}: level {sub.level} on {sub.space_code} "
            f"({covers}), {sub.status}"
        )
    else:
        lines.append(
            f"  2. role default: {g.role} has {level} on {q.space} (spaces.yaml granted_by_default)"
        )
    lines.append(f"  3. levels.csv row: {', '.join(explanation['levels.csv'])}")
    lines.append(f"  4. matcher: {explanation['model']}")
    lines.append(f"  rule: {decision.rule}")
    return lines


def _management_chain(
    session: Session, decider: Decider, q: Question, decision: Decision, today: dt.date
) -> list[str]:
    role = decider.role_of(q.user_id, q.structure_id, today)
    structure = decider.index.structures.get(q.structure_id)
    membership = decider.index.memberships.get((q.user_id, q.structure_id))
    attachment_id = next(
        (
            a.id
            for a in (membership.attachments if membership else [])
            if a.role == role and roles.in_force(a, today)
        ),
        None,
    )
    lines = [
        (
            f"  facts: account {decider.index.users.get(q.user_id, 'unknown')}, role "
            f"{role or 'none'}, structure {structure.status if structure else 'unknown'}"
        )
    ]
    if not decision.allowed:
        return [*lines, f"  first missing link: {decision.reason}"]
    return [
        *lines,
        f"  1. {_attachment_line(session, attachment_id)}",
        f"  2. roles.yaml rule: p, {role}, {q.action}, {structure.status if structure else '?'}",
        f"  3. matcher: {MATCHER_MANAGEMENT}",
        f"  rule: {decision.rule}",
    ]


def _flat(facts: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in facts.items())


# --- diffs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One decision that differs between two versions of the policy files."""

    user: str
    structure: str
    service: str | None
    space: str | None
    action: str
    old: bool
    new: bool

    def __str__(self) -> str:
        scope = self.structure + (f"/{self.service}" if self.service else "")
        what = f"{self.space}:{self.action}" if self.space else self.action
        verdict = {True: "allow", False: "deny"}
        return f"{self.user} on {scope}: {what}: {verdict[self.old]} -> {verdict[self.new]}"


def _decider(
    policy_dir: str | Path, engine: Engine, snapshots: SnapshotStore | None = None
) -> Decider:
    decider = Decider(PolicyEngine(load_policies(policy_dir)), engine, snapshots=snapshots)
    decider.load()
    return decider


def _alongside(policy_dir: str | Path, other: Decider) -> Decider:
    """A decider with the files of `policy_dir` over `other`'s index (one load
    of the facts for both sides of a diff)."""
    decider = Decider(PolicyEngine(load_policies(policy_dir)), other.db_engine)
    decider.share_index(other)
    return decider


def _changes(
    old: Decider,
    new: Decider,
    members: Iterable[tuple[int, int, set[str], set[str], list[Right], list[Right]]],
    users: Mapping[int, str],
    structures: Mapping[int, str],
) -> list[Change]:
    """Every decision that differs, pair by pair, from each side's answers
    on the pair (user, structure, management actions allowed before and
    after, rights before and after): management actions first (sorted), then
    per scope, space (sorted) and action (SPACE_ACTIONS) - the order of
    asking every question in turn, which this does not do: each side
    enumerates what it allows (Decider.member_rights / rights) and the two
    are compared."""
    spaces = sorted({s.code for d in (old, new) for s in d.policy.policies.spaces})
    actions = sorted({*old.policy.policies.actions, *new.policy.policies.actions})
    space_rank = {code: n for n, code in enumerate(spaces)}
    action_rank = {action: n for n, action in enumerate(SPACE_ACTIONS)}
    changes: list[Change] = []
    for user_id, structure_id, managed, now, rights_before, rights_after in members:
        changes.extend(
            Change(
                users[user_id],
                structures[structure_id],
                None,
                None,
                action,
                action in managed,
                action in now,
            )
            for action in actions
            if (action in managed) != (action in now)
        )
        before = {right[:3] for right in rights_before}
        after = {right[:3] for right in rights_after}
        if before == after:
            continue
        scope_rank = {service: n for n, service in enumerate(old.scopes(structure_id))}
        for service, space, action in sorted(
            before ^ after,
            key=lambda r: (scope_rank[r[0]], space_rank[r[1]], action_rank[r[2]]),
        ):
            changes.append(
                Change(
                    users[user_id],
                    structures[structure_id],
                    service,
                    space,
                    action,
                    (service, space, action) in before,
                    (service, space, action) in after,
                )
            )
    return changes


def _pairs(
    old: Decider, new: Decider, pairs: Iterable[tuple[int, int]]
) -> Iterator[tuple[int, int, set[str], set[str], list[Right], list[Right]]]:
    """Each side's answers on each (user, structure) pair."""
    today = roles.today()
    for user_id, structure_id in pairs:
        yield (
            user_id,
            structure_id,
            old.management_rights(user_id, structure_id, today),
            new.management_rights(user_id, structure_id, today),
            old.rights(user_id, structure_id, today),
            new.rights(user_id, structure_id, today),
        )


def _members(
    old: Decider, new: Decider, structure_ids: Iterable[int]
) -> Iterator[tuple[int, int, set[str], set[str], list[Right], list[Right]]]:
    """Each side's answers on every member of each structure."""
    today = roles.today()
    for structure_id in structure_ids:
        for (user_id, role, before), (_, role_after, after) in zip(
            old.member_rights(structure_id, today),
            new.member_rights(structure_id, today),
            strict=True,
        ):
            known = user_id in old.index.users  # the index is shared: the same on both sides
            yield (
                user_id,
                structure_id,
                old.management_allowed(structure_id, role) if known else set(),
                new.management_allowed(structure_id, role_after) if known else set(),
                before,
                after,
            )


def diff_world(old_dir: str | Path, new_dir: str | Path, world: Mapping[str, Any]) -> list[Change]:
    """Every decision on every (user, structure) pair of a fixture world that the
    policy files of `new_dir` take differently from those of `old_dir`."""
    with world_runtime(world, old_dir) as (rt, ids):
        new = _alongside(new_dir, rt.decider)
        pairs = [(u, s) for u in ids.users.values() for s in ids.structures.values()]
        return _changes(
            rt.decider,
            new,
            _pairs(rt.decider, new, pairs),
            {v: k for k, v in ids.users.items()},
            {v: k for k, v in ids.structures.items()},
        )


def diff_database(
    old_dir: str | Path,
    new_dir: str | Path,
    engine: Engine,
    snapshots: SnapshotStore | None = None,
) -> list[Change]:
    """The same over a database: every user with an attachment or a
    subscription on a structure, asked about that structure (a user without
    any holds nothing there under the model). Users are named by login email,
    structures by identifier value. `snapshots`: the machine's index
    snapshots (the service's: rt.decider.snapshots), mapped instead of
    loading the tables (None: loaded into dicts)."""
    old = _decider(old_dir, engine, snapshots)
    new = _alongside(new_dir, old)
    with Session(engine) as session:
        users = {
            row.id: row.login_email for row in session.execute(select(User.id, User.login_email))
        }
        structures = {
            row.id: row.identifier_value
            for row in session.execute(select(Structure.id, Structure.identifier_value))
        }
    members = _members(old, new, sorted(old.index.structures))
    return _changes(old, new, members, users, structures)
