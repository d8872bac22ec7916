"""The review report: findings that need a human look, each with why it
matters and the history entries behind it, and (with `since`) every change of
rights recorded since a day. `build_report` gathers it and `report_json` gives
it as JSON-ready data; the HTML page is the api's (api/review_html.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVarTuple

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import QueryableAttribute, Session, aliased

from models import (
    Attachment,
    HistoryEntry,
    OpenedSpace,
    Structure,
    Subscription,
    TechnicalCredential,
    User,
    utcnow,
)

from .. import roles
from ..engine.decisions import Decider
from ..roles import in_force_condition
from ..runtime import Runtime
from ..workflows.lifecycle import orphan_structure_ids
from ..workflows.records import RIGHTS_ACTIONS
from .exports import export_scope

Ts = TypeVarTuple("Ts")

# A user able to modify documents on this many structures or more is listed.
MANY_STRUCTURES = 5
# Secrets expiring within this many days are listed (expired ones always are).
SECRET_WARNING_DAYS = 30
# Accounts pending activation for longer than this are listed.
PENDING_DAYS = 30
# The user's own account space: every member modifies it by default, so it says
# nothing about their power over a structure's documents.
PERSONAL_SPACES = frozenset({"my_account"})


# kind -> (title, severity, why it matters)
KINDS: dict[str, tuple[str, str, str]] = {
    "structure_without_principal": (
        "Structures without an acting principal",
        "high",
        (
            "Nobody can hand over the structure, manage its technical users or change its "
            "identifier until the operator appoints a principal."
        ),
    ),
    "manager_not_active": (
        "Managers whose account is inactive or pending",
        "high",
        (
            "A manager role held by an account nobody uses is a dormant power that can be "
            "revived by reactivating or activating the account."
        ),
    ),
    "technical_secret_expiring": (
        "Technical users with a secret expired or expiring soon",
        "medium",
        (
            f"An expired secret stops the structure's system; one expiring within "
            f"{SECRET_WARNING_DAYS} days must be rotated and the system warned in time."
        ),
    ),
    "many_structures_modify": (
        f"Users modifying documents on {MANY_STRUCTURES} structures or more",
        "medium",
        (
            "Broad modification rights across structures are rarely needed and multiply the "
            "damage of a stolen account."
        ),
    ),
    "attachment_out_of_dates": (
        "Validated attachments not in force (future start or ended)",
        "low",
        (
            "A future start silently grants rights later, and an ended attachment should be "
            "removed rather than left validated."
        ),
    ),
    "account_pending_too_long": (
        f"Accounts pending activation for more than {PENDING_DAYS} days",
        "low",
        (
            "An account never activated is likely unwanted, and its activation link could be "
            "resent to the wrong person."
        ),
    ),
    "inactive_user_attached": (
        "Inactive or closed accounts still holding validated attachments",
        "medium",
        "Reactivation would restore every right at once, without any manager validating it again.",
    ),
    "subscription_on_closed_space": (
        "Subscriptions on spaces no longer opened",
        "low",
        "The right is dormant and comes back unnoticed if the space is opened again.",
    ),
}


@dataclass
class HistoryRef:
    """One history entry behind a finding or listed as a change of rights."""

    id: int
    at: str
    action: str
    structure_id: int | None
    actor: str
    target: str
    comment: str


@dataclass
class Finding:
    kind: str
    severity: str
    why: str
    detail: str
    structure_id: int | None = None
    structure: str = ""
    user_id: int | None = None
    user: str = ""
    history_ids: list[int] = field(default_factory=list)


@dataclass
class StructureChanges:
    structure_id: int | None
    structure: str
    entries: list[HistoryRef]


@dataclass
class Report:
    generated_at: str
    structure_id: int | None
    since: str | None
    findings: list[Finding]
    changes: list[StructureChanges]
    # Every history entry a finding links to, by id.
    history: dict[int, HistoryRef]


# A history entry as a report links it: (id, structure id, action).
_Entry = tuple[int, int | None, str]
_ByKey = dict[int, list[_Entry]]


class _World:
    """The rows a report reads, limited to one structure when asked."""

    def __init__(self, session: Session, structure_id: int | None) -> None:
        self.session = session
        self.structure_id = structure_id
        stmt = select(Structure)
        if structure_id is not None:
            stmt = stmt.where(Structure.id == structure_id)
        self.structures = {s.id: s for s in session.scalars(stmt)}
        self._users: dict[int, User] = {}
        self._names: dict[int, str] | None = None
        self._history_index: tuple[_ByKey, _ByKey, list[_Entry]] | None = None

    def scoped(self, stmt: Select[*Ts], column: QueryableAttribute[int | None]) -> Select[*Ts]:
        return stmt if self.structure_id is None else stmt.where(column == self.structure_id)

    def user(self, user_id: int) -> User:
        if user_id not in self._users:
            self._users[user_id] = self.session.get_one(User, user_id)
        return self._users[user_id]

    def name(self, user_id: int | None) -> str:
        if user_id is None:
            return ""
        if self.structure_id is None:
            # A report of every structure names thousands of people: every
            # name is read at once, as plain rows.
            if self._names is None:
                self._names = {
                    uid: f"{first} {last} <{email}>"
                    for uid, first, last, email in self.session.connection().execute(
                        select(User.id, User.first_name, User.last_name, User.login_email)
                    )
                }
            found = self._names.get(user_id)
            if found is not None:
                return found
        u = self.user(user_id)
        return f"{u.first_name} {u.last_name} <{u.login_email}>"

    def designation(self, structure_id: int | None) -> str:
        if structure_id is None:
            return ""
        found = self.structures.get(structure_id) or self.session.get(Structure, structure_id)
        return found.designation if found else ""

    def history_of(
        self, user_id: int | None, structure_id: int | None, actions: Iterable[str] | None = None
    ) -> list[int]:
        """Entries about the user on the structure (or any structure), plus the
        account entries of the user; only `actions` when given.

        A report of every structure asks this once or more per finding (tens of
        thousands of times at 100,000 grants): the history's (id, target,
        structure, action) columns are then read once, in id order, and each
        question answered from memory. A report on one structure asks a few
        times and reads only what it asks."""
        wanted = None if actions is None else set(actions)
        if self.structure_id is None:
            if user_id is not None:
                rows = self._history()[0].get(user_id, ())
                if structure_id is not None:
                    rows = [r for r in rows if r[1] is None or r[1] == structure_id]
            elif structure_id is not None:
                rows = self._history()[1].get(structure_id, ())
            else:
                rows = self._history()[2]
            return [r[0] for r in rows if wanted is None or r[2] in wanted]
        stmt = select(HistoryEntry.id)
        if user_id is not None:
            stmt = stmt.where(HistoryEntry.target_user_id == user_id)
            if structure_id is not None:
                stmt = stmt.where(
                    or_(
                        HistoryEntry.structure_id == structure_id,
                        HistoryEntry.structure_id.is_(None),
                    )
                )
        elif structure_id is not None:
            stmt = stmt.where(HistoryEntry.structure_id == structure_id)
        if wanted is not None:
            stmt = stmt.where(HistoryEntry.action.in_(sorted(wanted)))
        return list(self.session.scalars(stmt.order_by(HistoryEntry.id)))

    def _history(self) -> tuple[_ByKey, _ByKey, list[_Entry]]:
        """(entries by target user, entries by structure, every entry), each
        entry (id, structure id, action), in id order; read on first use."""
        if self._history_index is None:
            by_user: _ByKey = defaultdict(list)
            by_structure: _ByKey = defaultdict(list)
            every: list[_Entry] = []
            stmt = select(
                HistoryEntry.id,
                HistoryEntry.target_user_id,
                HistoryEntry.structure_id,
                HistoryEntry.action,
            ).order_by(HistoryEntry.id)
            for entry_id, target, sid, action in self.session.execute(stmt):
                entry = (entry_id, sid, action)
                every.append(entry)
                if target is not None:
                    by_user[target].append(entry)
                if sid is not None:
                    by_structure[sid].append(entry)
            self._history_index = (by_user, by_structure, every)
        return self._history_index


def _finding(
    w: _World,
    kind: str,
    detail: str,
    *,
    structure_id: int | None = None,
    user_id: int | None = None,
    history_ids: list[int] | None = None,
) -> Finding:
    _, severity, why = KINDS[kind]
    return Finding(
        kind=kind,
        severity=severity,
        why=why,
        detail=detail,
        structure_id=structure_id,
        structure=w.designation(structure_id),
        user_id=user_id,
        user=w.name(user_id),
        history_ids=history_ids or [],
    )


def _orphans(w: _World) -> Iterator[Finding]:
    only = None if w.structure_id is None else [w.structure_id]
    for sid in sorted(orphan_structure_ids(w.session, only)):
        principals = list(
            w.session.scalars(
                select(Attachment.user_id).where(
                    Attachment.structure_id == sid,
                    Attachment.role == "principal",
                    Attachment.status == "validated",
                )
            )
        )
        if principals:
            uid = principals[0]
            yield _finding(
                w,
                "structure_without_principal",
                f"The principal's account is {w.user(uid).status}.",
                structure_id=sid,
                user_id=uid,
                history_ids=w.history_of(uid, sid),
            )
        else:
            yield _finding(
                w,
                "structure_without_principal",
                "No validated principal.",
                structure_id=sid,
                history_ids=w.history_of(
                    None,
                    sid,
                    {
                        "structure.created",
                        "structure.registered",
                        "principal.designated",
                        "principal.appointed",
                    },
                ),
            )


def _inactive_managers(w: _World) -> Iterator[Finding]:
    stmt = w.scoped(
        select(Attachment.user_id, Attachment.structure_id, Attachment.role, User.status)
        .join(User, User.id == Attachment.user_id)
        .where(
            Attachment.role.in_(("principal", "secondary")),
            Attachment.status == "validated",
            User.status.in_(("inactive", "pending")),
        )
        .distinct()
        .order_by(Attachment.structure_id, Attachment.user_id),
        Attachment.structure_id,
    )
    for uid, sid, role, status in w.session.execute(stmt):
        yield _finding(
            w,
            "manager_not_active",
            f"{role} manager, account {status}.",
            structure_id=sid,
            user_id=uid,
            history_ids=w.history_of(uid, sid),
        )


def _secrets(w: _World, now: dt.datetime) -> Iterator[Finding]:
    limit = now + dt.timedelta(days=SECRET_WARNING_DAYS)
    stmt = w.scoped(
        select(TechnicalCredential)
        .join(User, User.id == TechnicalCredential.user_id)
        .where(TechnicalCredential.secret_expires_at <= limit, User.status != "closed")
        .order_by(TechnicalCredential.secret_expires_at),
        TechnicalCredential.structure_id,
    )
    for cred in w.session.scalars(stmt):
        expires = cred.secret_expires_at
        state = "expired" if expires <= now else "expires"
        yield _finding(
            w,
            "technical_secret_expiring",
            f"{cred.label}: secret {state} {expires.date().isoformat()}.",
            structure_id=cred.structure_id,
            user_id=cred.user_id,
            history_ids=w.history_of(
                cred.user_id,
                cred.structure_id,
                {"technical_user.created", "technical_user.secret_reset"},
            ),
        )


def _modifies(decider: Decider, user_id: int, structure_id: int, today: dt.date) -> bool:
    """Whether the user may modify a space other than the personal ones, on any
    scope of the structure (Decider.rights: what decide() allows)."""
    return any(
        action == "modify" and space not in PERSONAL_SPACES
        for _service, space, action, _rule in decider.rights(user_id, structure_id, today)
    )


def _broad_modifiers(w: _World, rt: Runtime, today: dt.date) -> Iterator[Finding]:
    decider = rt.decider
    with decider.reading():
        candidates = (
            decider.members_of(w.structure_id)
            if w.structure_id is not None
            else decider.index.users_with_memberships()
        )
        broad: list[tuple[int, list[int]]] = []
        for uid in candidates:
            held = decider.structures_of(uid)
            if len(held) < MANY_STRUCTURES:
                continue
            modified = [sid for sid in held if _modifies(decider, uid, sid, today)]
            if len(modified) >= MANY_STRUCTURES and (
                w.structure_id is None or w.structure_id in modified
            ):
                broad.append((uid, modified))
    for uid, modified in broad:
        history = [i for sid in modified for i in w.history_of(uid, sid, RIGHTS_ACTIONS)]
        yield _finding(
            w,
            "many_structures_modify",
            f"Modifies documents on {len(modified)} structures: "
            f"{', '.join(str(s) for s in modified)}.",
            structure_id=w.structure_id,
            user_id=uid,
            history_ids=sorted(set(history)),
        )


def _out_of_dates(w: _World, today: dt.date) -> Iterator[Finding]:
    stmt = w.scoped(
        select(Attachment)
        .where(
            Attachment.status == "validated",
            ~in_force_condition(today),
        )
        .order_by(Attachment.structure_id, Attachment.user_id, Attachment.id),
        Attachment.structure_id,
    )
    for att in w.session.scalars(stmt):
        if att.valid_from > today:
            detail = f"{att.role}, starts {att.valid_from.isoformat()}."
        elif att.valid_until is not None:
            detail = f"{att.role}, ended {att.valid_until.isoformat()}."
        else:  # started and never ends, so in force: not what the query asked for
            continue
        yield _finding(
            w,
            "attachment_out_of_dates",
            detail,
            structure_id=att.structure_id,
            user_id=att.user_id,
            history_ids=w.history_of(att.user_id, att.structure_id),
        )


def _pending_accounts(w: _World, now: dt.datetime) -> Iterator[Finding]:
    stmt = select(User).where(
        User.status == "pending", User.created_at < now - dt.timedelta(days=PENDING_DAYS)
    )
    if w.structure_id is not None:
        stmt = stmt.where(
            User.id.in_(
                select(Attachment.user_id).where(
                    Attachment.structure_id == w.structure_id,
                    Attachment.status.in_(("validated", "pending")),
                )
            )
        )
    for user in w.session.scalars(stmt.order_by(User.id)):
        yield _finding(
            w,
            "account_pending_too_long",
            f"Pending since {user.created_at.date().isoformat()}.",
            structure_id=w.structure_id,
            user_id=user.id,
            history_ids=w.history_of(user.id, w.structure_id, {"account.created"}),
        )


def _inactive_attached(w: _World) -> Iterator[Finding]:
    stmt = w.scoped(
        select(Attachment.user_id, Attachment.structure_id, User.status)
        .join(User, User.id == Attachment.user_id)
        .where(Attachment.status == "validated", User.status.in_(("inactive", "closed")))
        .distinct()
        .order_by(Attachment.structure_id, Attachment.user_id),
        Attachment.structure_id,
    )
    for uid, sid, status in w.session.execute(stmt):
        yield _finding(
            w,
            "inactive_user_attached",
            f"Account {status}.",
            structure_id=sid,
            user_id=uid,
            history_ids=w.history_of(uid, sid),
        )


def _dormant_subscriptions(w: _World) -> Iterator[Finding]:
    """Validated subscriptions on a space opened nowhere they apply: on none
    of the structure's scopes (a subscription to every service), or neither
    on the whole structure nor on its service. Found by the database (a
    service holds a million subscriptions), read as plain rows."""
    opened = aliased(OpenedSpace)
    alive = (
        select(opened.id)
        .where(
            opened.structure_id == Subscription.structure_id,
            opened.space_code == Subscription.space_code,
            or_(
                Subscription.service_id.is_(None),
                opened.service_id.is_(None),
                opened.service_id == Subscription.service_id,
            ),
        )
        .exists()
    )
    stmt = w.scoped(
        select(
            Subscription.id,
            Subscription.structure_id,
            Subscription.service_id,
            Subscription.user_id,
            Subscription.space_code,
            Subscription.level,
        )
        .where(Subscription.status == "validated", ~alive)
        .order_by(Subscription.structure_id, Subscription.id),
        Subscription.structure_id,
    )
    closings: dict[int, set[int]] = {}  # structure -> its "spaces.updated" entries
    for sub in w.session.connection().execute(stmt).all():
        closed = closings.get(sub.structure_id)
        if closed is None:
            closed = closings[sub.structure_id] = set(
                w.history_of(None, sub.structure_id, {"spaces.updated"})
            )
        history = closed | set(
            w.history_of(sub.user_id, sub.structure_id, {"subscription_request.validated"})
        )
        scope = "all services" if sub.service_id is None else f"service {sub.service_id}"
        yield _finding(
            w,
            "subscription_on_closed_space",
            f"subscription:{sub.id} {sub.level} {sub.space_code} ({scope}).",
            structure_id=sub.structure_id,
            user_id=sub.user_id,
            history_ids=sorted(history),
        )


def _ref(w: _World, entry: HistoryEntry) -> HistoryRef:
    return HistoryRef(
        id=entry.id,
        at=entry.created_at.isoformat(),
        action=entry.action,
        structure_id=entry.structure_id,
        actor=w.name(entry.actor_id),
        target=w.name(entry.target_user_id),
        comment=entry.comment or "",
    )


def _changes(w: _World, since: dt.date) -> list[StructureChanges]:
    start = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    stmt = w.scoped(
        select(HistoryEntry)
        .where(HistoryEntry.created_at >= start, HistoryEntry.action.in_(sorted(RIGHTS_ACTIONS)))
        .order_by(HistoryEntry.structure_id, HistoryEntry.created_at, HistoryEntry.id),
        HistoryEntry.structure_id,
    )
    grouped: dict[int | None, list[HistoryRef]] = defaultdict(list)
    for entry in w.session.scalars(stmt):
        grouped[entry.structure_id].append(_ref(w, entry))
    return [StructureChanges(sid, w.designation(sid), entries) for sid, entries in grouped.items()]


def build_report(
    session: Session,
    rt: Runtime,
    structure_id: int | None = None,
    since: dt.date | None = None,
    now: dt.datetime | None = None,
) -> Report:
    """The findings of KINDS on one structure or the whole service, and (with
    `since`) every change of rights recorded since that day, by structure.

    Raises NotFound (unknown structure_id).
    """
    now = now or utcnow()
    today = roles.today(now)
    export_scope(session, structure_id)
    if structure_id is None:
        rt.decider.ready_for_enumeration()
    w = _World(session, structure_id)
    findings = [
        *_orphans(w),
        *_inactive_managers(w),
        *_secrets(w, now),
        *_broad_modifiers(w, rt, today),
        *_out_of_dates(w, today),
        *_pending_accounts(w, now),
        *_inactive_attached(w),
        *_dormant_subscriptions(w),
    ]
    ids = sorted({i for f in findings for i in f.history_ids})
    history = {
        e.id: _ref(w, e)
        for e in session.scalars(select(HistoryEntry).where(HistoryEntry.id.in_(ids)))
    }
    return Report(
        generated_at=now.isoformat(),
        structure_id=structure_id,
        since=since.isoformat() if since else None,
        findings=findings,
        changes=_changes(w, since) if since else [],
        history=history,
    )


def report_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data, with a count per kind."""
    counts = {kind: sum(1 for f in report.findings if f.kind == kind) for kind in KINDS}
    return {
        "generated_at": report.generated_at,
        "structure_id": report.structure_id,
        "since": report.since,
        "thresholds": {
            "many_structures": MANY_STRUCTURES,
            "secret_warning_days": SECRET_WARNING_DAYS,
            "pending_days": PENDING_DAYS,
        },
        "counts": counts,
        "findings": [_plain(f) for f in report.findings],
        "changes": [asdict(c) for c in report.changes],
        "history": {str(k): _plain(v) for k, v in sorted(report.history.items())},
    }


def _plain(item: Finding | HistoryRef) -> dict[str, Any]:
    """dataclasses.asdict of a flat dataclass (its lists shared, not copied):
    a report of every structure holds hundreds of thousands of findings, and
    asdict copies deeply."""
    names = _FIELD_NAMES.get(type(item))
    if names is None:
        names = _FIELD_NAMES[type(item)] = tuple(f.name for f in fields(item))
    return {name: getattr(item, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def report_json_text(data: dict[str, Any]) -> str:
    """The report's JSON as the CLI writes it: each top-level key on its own
    line, and each finding, change and history entry on one line of its own
    (readable, greppable, and written by json's C encoder: an indented dump
    of hundreds of thousands of findings takes seconds)."""
    parts = []
    for key, value in data.items():
        name = json.dumps(key)
        if isinstance(value, list) and value:
            items = ",\n".join(f"    {json.dumps(item)}" for item in value)
            parts.append(f"  {name}: [\n{items}\n  ]")
        elif isinstance(value, dict) and value:
            items = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            parts.append(f"  {name}: {{\n{items}\n  }}")
        else:
            parts.append(f"  {name}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"
