"""The decision index: in memory, the facts the model needs, read from the
service's own tables — users' statuses, structures with their services and
opened spaces, and per (user, structure) the validated attachments and
subscriptions. Loaded whole at start-up, then a few keys at a time as the
policy revision moves (Decider.ensure_fresh in decisions.py). Nothing is
decided here.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVarTuple

from sqlalchemy import Select, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from models import Attachment, OpenedSpace, Service, Structure, Subscription, User

from ..roles import RANK, in_force
from .policy import LEVEL_NONE

Ts = TypeVarTuple("Ts")

LEVEL_RANK = {LEVEL_NONE: 0, "consult": 1, "modify": 2}


@dataclass(slots=True)
class StructureEntry:
    status: str
    kind: str
    # service code -> (service id, active)
    services: dict[str, tuple[int, bool]] = field(default_factory=dict)
    # the same by lower-cased code: codes are unique per structure whatever
    # their case (migration 0010), and a question may name one in any case
    folded: dict[str, tuple[int, bool]] = field(default_factory=dict)
    # service id -> code
    codes: dict[int, str] = field(default_factory=dict)
    # (space code, service id or None) opened: a frozenset, half a set's size
    # (an entry is replaced whole when its structure changes, never edited)
    opened: frozenset[tuple[str, int | None]] = frozenset()

    def service(self, code: str) -> tuple[int, bool] | None:
        """(id, active) of the service with this code, case ignored; None if none."""
        return self.services.get(code) or self.folded.get(code.strip().lower())


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


# What a space question needs of a (user, structure) membership: whether a
# validated attachment in force covers the whole structure, or the asked
# service; the strongest such attachment's role and id; the packed "all
# services" and asked-service subscriptions on the space (see pack); whether
# an attachment covering the scope exists but is not in force today (only
# then does a denial read the dates, decisions.dates_reason).
MembershipFacts = tuple[bool, bool, "str | None", "int | None", "int | None", "int | None", bool]
NO_FACTS: MembershipFacts = (False, False, None, None, None, None, False)


def membership_facts(
    m: Membership, service_id: int | None, space: str, today: dt.date
) -> MembershipFacts:
    """MembershipFacts of a membership held as objects (the dict index's, or
    one in the compact index's overlay)."""
    whole = on_service = dated = False
    role, attachment_id, best = None, None, 0
    for att in m.attachments:  # all validated: the strongest in force counts
        if not in_force(att, today):
            dated = dated or att.service_id is None or att.service_id == service_id
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
    subs = m.subscriptions
    return (
        whole,
        on_service,
        role,
        attachment_id,
        subs.get((space, None)),
        subs.get((space, service_id)) if service_id is not None else None,
        dated,
    )


class Index:
    """The facts of the current revision, in dicts: the reference the compact
    index (compact.py) is tested against, and its fallback when a snapshot
    cannot hold the tables. Mutated only under Decider's lock."""

    compact = False
    base_revision = -1
    overlay_size = 0

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.users: dict[int, str] = {}  # user id -> status
        self.structures: dict[int, StructureEntry] = {}
        self.memberships: dict[tuple[int, int], Membership] = {}
        # structure id -> user ids with a membership; user id -> structure ids
        self.members_of: dict[int, set[int]] = {}
        self.structures_of: dict[int, set[int]] = {}

    # Loading: whole tables at start-up, or a few keys per change.

    def load_all(self, session: Session) -> None:
        self._clear()
        statuses: dict[str, str] = {}
        for uid, status in driver_rows(session, select(User.id, User.status)):
            self.users[uid] = statuses.setdefault(status, status)
        self.load_structures(session, None)
        self.load_memberships(session, None)

    def reload_user(self, session: Session, user_id: int) -> None:
        status = session.scalar(select(User.status).where(User.id == user_id))
        if status is None:
            self.users.pop(user_id, None)
        else:
            self.users[user_id] = status

    def reload_structure(self, session: Session, structure_id: int) -> None:
        self.structures.pop(structure_id, None)
        self.load_structures(session, structure_id)

    def reload_membership(self, session: Session, user_id: int, structure_id: int) -> None:
        self._drop_membership(user_id, structure_id)
        self.reload_user(session, user_id)
        self.load_memberships(session, (user_id, structure_id))

    def facts(
        self, user_id: int, structure_id: int, service_id: int | None, space: str, today: dt.date
    ) -> MembershipFacts:
        """What a space question needs of the (user, structure) membership."""
        found = self.memberships.get((user_id, structure_id))
        return NO_FACTS if found is None else membership_facts(found, service_id, space, today)

    def sizes(self) -> dict[str, int]:
        return {
            "users": len(self.users),
            "structures": len(self.structures),
            "memberships": len(self.memberships),
        }

    # Enumerations

    def structures_for(self, user_id: int) -> list[int]:
        """The structures the user has a membership on, in order."""
        return sorted(self.structures_of.get(user_id, ()))

    def members(self, structure_id: int) -> list[int]:
        """The users with a membership on the structure, in order."""
        return sorted(self.members_of.get(structure_id, ()))

    def users_with_memberships(self) -> list[int]:
        return sorted(uid for uid, held in self.structures_of.items() if held)

    def _drop_membership(self, user_id: int, structure_id: int) -> None:
        self.memberships.pop((user_id, structure_id), None)
        self.members_of.get(structure_id, set()).discard(user_id)
        self.structures_of.get(user_id, set()).discard(structure_id)

    def load_structures(self, session: Session, only: int | None) -> None:
        def where(stmt: Select[*Ts], column: InstrumentedAttribute[int]) -> Select[*Ts]:
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
                entry.folded[code.strip().lower()] = (svc_id, active)
                entry.codes[svc_id] = code
        for sid, space, scope in session.execute(
            where(
                select(OpenedSpace.structure_id, OpenedSpace.space_code, OpenedSpace.service_id),
                OpenedSpace.structure_id,
            )
        ):
            entry = self.structures.get(sid)
            if entry is not None:
                entry.opened = entry.opened | {(space, scope)}

    def _membership(self, user_id: int, structure_id: int) -> Membership:
        key = (user_id, structure_id)
        found = self.memberships.get(key)
        if found is None:
            found = self.memberships[key] = Membership()
            self.members_of.setdefault(structure_id, set()).add(user_id)
            self.structures_of.setdefault(user_id, set()).add(structure_id)
        return found

    def load_memberships(self, session: Session, only: tuple[int, int] | None) -> None:
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
        for aid, uid, sid, svc, role, start, end in driver_rows(session, att):
            self._membership(uid, sid).attachments.append(
                AttachmentEntry(
                    aid,
                    svc,
                    one(role, role),
                    as_date(shared, start),
                    None if end is None else as_date(shared, end),
                )
            )
        for sub_id, uid, sid, space, svc, level in driver_rows(session, sub):
            key = (space, svc)
            self._membership(uid, sid).subscriptions[one(key, key)] = pack(sub_id, level)


def read_structure(session: Session, structure_id: int) -> StructureEntry | None:
    """One structure as the index holds it, read now; None if there is none."""
    index = Index()
    index.load_structures(session, structure_id)
    return index.structures.get(structure_id)


def read_membership(session: Session, user_id: int, structure_id: int) -> Membership | None:
    """One (user, structure) membership as the index holds it, read now; None
    when the user has no validated attachment or subscription there."""
    index = Index()
    index.load_memberships(session, (user_id, structure_id))
    return index.memberships.get((user_id, structure_id))


def membership_pairs(session: Session, key: int, *, of_user: bool) -> set[tuple[int, int]]:
    """The (user, structure) pairs with a membership (a validated attachment
    or subscription, as load_memberships reads them) of user `key` (`of_user`)
    or of structure `key`, read now."""
    pairs: set[tuple[int, int]] = set()
    for model in (Attachment, Subscription):
        column = model.user_id if of_user else model.structure_id
        rows = session.execute(
            select(model.user_id, model.structure_id)
            .where(column == key, model.status == "validated")
            .distinct()
        )
        pairs.update((int(uid), int(sid)) for uid, sid in rows)
    return pairs


def index_pairs(index: Any, key: int, *, of_user: bool) -> list[tuple[int, int]]:
    """The (user, structure) pairs `index` (an Index or a CompactIndex) holds a
    membership for, of user `key` (`of_user`) or of structure `key`."""
    if of_user:
        return [(key, sid) for sid in index.structures_for(key)]
    return [(uid, key) for uid in index.members(key)]


def pack(subscription_id: int, level: str) -> int:
    """A subscription in the index: its id and level in one int (one object)."""
    return subscription_id << 2 | LEVEL_RANK[level]


def unpack(packed: int) -> tuple[int, str]:
    """(subscription id, level) of a packed subscription."""
    return packed >> 2, LEVEL_OF[packed & 3]


LEVEL_OF = (LEVEL_NONE, "consult", "modify")


def as_date(shared: dict[Any, Any], value: Any) -> dt.date:
    """One date object per distinct value (SQLite's driver gives ISO strings)."""
    found = shared.get(value)
    if found is None:
        found = shared[value] = dt.date.fromisoformat(value) if isinstance(value, str) else value
    return found


# Server-side cursors open at once in one transaction need names of their own.
_CURSORS = itertools.count()


def driver_rows(session: Session, stmt: Any) -> Iterator[tuple]:
    """The rows of a Core select as the driver's plain tuples, in the session's
    transaction: a million SQLAlchemy Row objects would cost seconds at start-up.
    PostgreSQL streams them through a server-side cursor."""
    for batch in driver_batches(session, stmt):
        yield from batch


def driver_batches(session: Session, stmt: Any) -> Iterator[Sequence[Any]]:
    """The same rows, a list of up to 10,000 at a time."""
    connection = session.connection()
    sql = str(stmt.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    raw = connection.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("the session's connection is closed")
    cursor = (
        raw.cursor()
        if connection.dialect.name == "sqlite"
        else raw.cursor(name=f"authz_index_load_{next(_CURSORS)}")
    )
    try:
        cursor.execute(sql)
        while batch := cursor.fetchmany(10_000):
            yield batch
    finally:
        cursor.close()
