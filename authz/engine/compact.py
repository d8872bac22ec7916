"""The decision index in a compact form: one flat buffer per revision, which
every worker of a machine maps read-only from the same file (snapshots.py),
plus a small per-process overlay of what changed since.

A dict index (index.py) costs about 340 bytes per grant in every worker, and a
fork does not share it: reference counts write to every object's page. Here the
users and the memberships — nearly all of the facts — are arrays of machine
integers in one buffer:

- users: their ids, sorted, and a status byte each; and, indexed by user id,
  the status byte again (-1: no such user) and where the id's memberships
  start (one read each for a question: no search);
- memberships, one per (user, structure) with a validated attachment or
  subscription: a sorted key (user id << 32 | structure id), offsets into the
  attachment and subscription arrays, and a permutation of the memberships
  sorted by (structure, user) for "who is on this structure";
- attachments: id; service id << 8 | role code (service 0: the whole
  structure); first day << 32 | last day (proleptic ordinals; 0: open-ended);
- subscriptions: space code << 32 | service id (0: every service), and the
  packed (subscription id, level) of index.pack.

The structures (about one per hundred grants, with their services and opened
spaces) are stored in the same file, in JSON lines, and unpacked into dicts by
each worker: every question names one, and a dict look-up is the cheapest.

A question's facts are read from the arrays in place (CompactIndex.facts);
the mapping interfaces (users, memberships) give the dict index's objects,
made on demand, for everything else. Tests compare every fact of both on
generated worlds. The buffer is never written after it is built: the reloads
of index.py land in the overlay, which shadows the buffer key by key.
"""

from __future__ import annotations

import array
import datetime as dt
import hashlib
import itertools
import json
import operator
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Attachment, OpenedSpace, Service, Structure, Subscription, User

from ..roles import RANK
from .index import (
    LEVEL_RANK,
    NO_FACTS,
    AttachmentEntry,
    Membership,
    MembershipFacts,
    StructureEntry,
    as_date,
    driver_batches,
    membership_facts,
    read_membership,
    read_structure,
)

MAGIC = b"AUTHZIDX"
# The layout's version: any change to what build() writes changes it, so that
# a release never reads another release's files (they are built again).
FORMAT = 2
_HEADER = struct.Struct("<8sII")  # magic, format, length of the JSON description
_ALIGN = 8
_LOW = (1 << 32) - 1
# Ids must fit the packed membership key (user id << 32 | structure id).
MAX_ID = (1 << 31) - 1

# The per-user tables are indexed by user id: ids that leave most of their
# range unused (more than this many slots per user, past a million) are
# refused, and the dict index loaded instead.
DENSE_SLOTS_PER_USER = 4

# Gone from the overlay: the key was deleted since the buffer was built.
_GONE: Any = object()
_MISSING: Any = object()

# The arrays of a snapshot: name, typecode (array module; "q" 8 bytes, "i" 4, "b" 1).
ARRAYS = (
    ("user_ids", "q"),
    ("user_status", "b"),
    ("status_by_id", "b"),
    ("m_by_user", "i"),
    ("m_key", "q"),
    ("m_att", "i"),
    ("m_sub", "i"),
    ("m_by_structure", "i"),
    ("a_id", "q"),
    ("a_scope", "q"),
    ("a_days", "q"),
    ("s_slot", "q"),
    ("s_packed", "q"),
)


class SnapshotError(Exception):
    """A snapshot cannot be built (an id beyond MAX_ID, a table too large) or
    read (not a snapshot, another format)."""


def _check_ids(*columns: Any) -> None:
    """Refuse ids the packed keys and arrays cannot hold (1..MAX_ID)."""
    for column in columns:
        if column and not (min(column) > 0 and max(column) <= MAX_ID):
            raise SnapshotError(f"an id does not fit the compact index (1..{MAX_ID})")


def _check_services(column: Any) -> None:
    """The same for service ids, where 0 stands for none."""
    if column and not (min(column) >= 0 and max(column) <= MAX_ID):
        raise SnapshotError(f"an id does not fit the compact index (1..{MAX_ID})")


class _Codes(dict[str, int]):
    """Strings (statuses, roles, space codes) by a small number, in the order
    they are first met (iterating gives the names in code order)."""

    def __missing__(self, name: str) -> int:
        if len(self) >= 127:  # a signed byte each
            raise SnapshotError("more than 127 distinct statuses, roles or spaces")
        code = self[name] = len(self)
        return code


class _Ordinals(dict[Any, int]):
    """A date (a date, or the ISO text SQLite gives) as its proleptic ordinal;
    None (open-ended) as 0."""

    def __missing__(self, value: Any) -> int:
        day = 0 if value is None else as_date({}, value).toordinal()
        self[value] = day
        return day


def _dense_tables(arrays: dict[str, array.array[int]]) -> None:
    """The tables a question reads by user id, in one step each: the status
    code of every id (-1: no such user), and where each id's memberships start
    in m_key (those of id u are m_by_user[u] to m_by_user[u + 1]). Raises
    SnapshotError when the ids are too sparse for tables of that length."""
    user_ids, user_status, m_key = arrays["user_ids"], arrays["user_status"], arrays["m_key"]
    top = max(user_ids[-1] if user_ids else 0, (m_key[-1] >> 32) if m_key else 0)
    if top + 1 > max(DENSE_SLOTS_PER_USER * len(user_ids), len(user_ids) + 1_000_000):
        raise SnapshotError(
            f"user ids up to {top} for {len(user_ids)} users: too sparse for the compact index"
        )
    by_id = array.array("b", [-1]) * (top + 1)
    for uid, code in zip(user_ids, user_status, strict=True):
        by_id[uid] = code
    counts = array.array("i", [0]) * (top + 2)
    for key in m_key:
        counts[(key >> 32) + 1] += 1
    arrays["status_by_id"] = by_id
    arrays["m_by_user"] = array.array("i", itertools.accumulate(counts))


def _ordered(keys: array.array[int]) -> bool:
    return all(map(operator.le, keys, itertools.islice(keys, 1, None)))


def _batches(session: Session, stmt: Any) -> Iterator[tuple[list[Any], ...]]:
    """The rows of `stmt` in batches, each as a tuple of columns."""
    width = len(stmt.selected_columns)
    for batch in driver_batches(session, stmt):
        yield tuple(list(map(operator.itemgetter(i), batch)) for i in range(width))


def build(session: Session, revision: int, fingerprint: str, out: IO[bytes]) -> int:
    """Read the facts from the service's tables and write a snapshot of them,
    labelled `revision` (rows read at that revision or later: the changes
    logged after it are applied on top, and reloading is idempotent), to `out`.
    Returns the number of bytes written. Raises SnapshotError.

    Rows are taken a batch at a time and their columns appended whole (a
    Python statement per row would cost more than reading the rows)."""
    arrays = {name: array.array(code) for name, code in ARRAYS}
    statuses, roles, spaces = _Codes(), _Codes(), _Codes()
    levels = LEVEL_RANK
    ordinals = _Ordinals()

    for uid, status in _batches(session, select(User.id, User.status).order_by(User.id)):
        _check_ids(uid)
        arrays["user_ids"].extend(uid)
        arrays["user_status"].extend(map(statuses.__getitem__, status))

    a_keys = array.array("q")
    for uid, sid, aid, svc, role, starts, ends in _batches(
        session,
        select(
            Attachment.user_id,
            Attachment.structure_id,
            Attachment.id,
            Attachment.service_id,
            Attachment.role,
            Attachment.valid_from,
            Attachment.valid_until,
        )
        .where(Attachment.status == "validated")
        .order_by(Attachment.user_id, Attachment.structure_id, Attachment.id),
    ):
        services = [0 if v is None else v for v in svc]
        _check_ids(uid, sid, aid)
        _check_services(services)
        a_keys.extend([u << 32 | s for u, s in zip(uid, sid, strict=True)])
        arrays["a_id"].extend(aid)
        arrays["a_scope"].extend(
            [v << 8 | r for v, r in zip(services, map(roles.__getitem__, role), strict=True)]
        )
        arrays["a_days"].extend(
            [
                f << 32 | u
                for f, u in zip(
                    map(ordinals.__getitem__, starts), map(ordinals.__getitem__, ends), strict=True
                )
            ]
        )

    s_keys = array.array("q")
    for uid, sid, space, svc, sub_id, level in _batches(
        session,
        select(
            Subscription.user_id,
            Subscription.structure_id,
            Subscription.space_code,
            Subscription.service_id,
            Subscription.id,
            Subscription.level,
        )
        # Unordered: a million rows come twice as fast as sorted, and sorting
        # their keys here costs less. Their order within a membership does not
        # matter (a dict by space and service); an attachment's does (the
        # first of equal roles is the one a decision names).
        .where(Subscription.status == "validated"),
    ):
        services = [0 if v is None else v for v in svc]
        _check_ids(uid, sid, sub_id)
        _check_services(services)
        s_keys.extend([u << 32 | s for u, s in zip(uid, sid, strict=True)])
        arrays["s_slot"].extend(
            [c << 32 | v for c, v in zip(map(spaces.__getitem__, space), services, strict=True)]
        )
        arrays["s_packed"].extend(
            [i << 2 | r for i, r in zip(sub_id, map(levels.__getitem__, level), strict=True)]
        )

    if not _ordered(s_keys):  # at least two rows, then
        pick = operator.itemgetter(*sorted(range(len(s_keys)), key=s_keys.__getitem__))
        s_keys = array.array("q", pick(s_keys))
        for name in ("s_slot", "s_packed"):
            arrays[name] = array.array(arrays[name].typecode, pick(arrays[name]))
        del pick
    if not _ordered(a_keys):
        # The database sorted in an order Python does not (it never should,
        # on integers): refuse rather than answer from a misordered index.
        raise SnapshotError("rows are not in (user, structure) order")
    m_key = arrays["m_key"]
    m_key.extend(sorted(set(a_keys).union(s_keys)))
    for name, keys in (("m_att", a_keys.tolist()), ("m_sub", s_keys.tolist())):
        arrays[name].extend([bisect_left(keys, k) for k in m_key] + [len(keys)])
    if len(a_keys) > MAX_ID or len(s_keys) > MAX_ID:
        raise SnapshotError("too many attachments or subscriptions for the compact index")
    _dense_tables(arrays)
    swapped = [(k & _LOW) << 32 | k >> 32 for k in m_key]  # (structure, user)
    arrays["m_by_structure"] = array.array("i", sorted(range(len(m_key)), key=swapped.__getitem__))
    del swapped
    structures = _structure_rows(session)
    description: dict[str, Any] = {
        "revision": revision,
        "fingerprint": fingerprint,
        "statuses": list(statuses),
        "roles": list(roles),
        "spaces": list(spaces),
        "arrays": {},
    }
    offset = 0
    for name, code in ARRAYS:
        data = arrays[name]
        description["arrays"][name] = [offset, code, len(data)]
        offset = _aligned(offset + len(data) * data.itemsize)
    description["structures"] = [offset, len(structures)]
    body: list[bytes] = []
    written = 0
    for name, _code in ARRAYS:
        raw = arrays[name].tobytes()
        pad = _aligned(written + len(raw)) - written - len(raw)
        body += [raw, b"\0" * pad]
        written += len(raw) + pad
    body.append(structures)
    digest = hashlib.sha256()
    for chunk in body:
        digest.update(chunk)
    description["sha256"] = digest.hexdigest()
    head = json.dumps(description, separators=(",", ":")).encode()
    start = _aligned(_HEADER.size + len(head))
    out.write(_HEADER.pack(MAGIC, FORMAT, len(head)))
    out.write(head)
    out.write(b"\0" * (start - _HEADER.size - len(head)))
    for chunk in body:
        out.write(chunk)
    return start + written + len(structures)


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _structure_rows(session: Session) -> bytes:
    """Every structure with its services and opened spaces, in JSON, one line
    each: [id, status, kind, [[service id, code, active]], [[space, service id]]]."""
    rows: dict[int, tuple[int, str, str, list[Any], list[Any]]] = {}
    for sid, status, kind in session.execute(
        select(Structure.id, Structure.status, Structure.kind).order_by(Structure.id)
    ):
        rows[sid] = (sid, status, kind, [], [])
    for svc_id, sid, code, active in session.execute(
        select(Service.id, Service.structure_id, Service.code, Service.active).order_by(Service.id)
    ):
        if sid in rows:
            rows[sid][3].append((svc_id, code, bool(active)))
    for sid, space, scope in session.execute(
        select(OpenedSpace.structure_id, OpenedSpace.space_code, OpenedSpace.service_id).order_by(
            OpenedSpace.structure_id, OpenedSpace.space_code, OpenedSpace.service_id
        )
    ):
        if sid in rows:
            rows[sid][4].append((space, scope))
    # One line per structure: read back a line at a time (a single document of
    # them all would be parsed into lists that cost more than the entries).
    return b"\n".join(json.dumps(row, separators=(",", ":")).encode() for row in rows.values())


def structure_entries(blob: bytes | memoryview) -> dict[int, StructureEntry]:
    """The structures of a snapshot, unpacked as the dict index holds them."""
    out: dict[int, StructureEntry] = {}
    shared: dict[Any, Any] = {}
    one = shared.setdefault
    lines = bytes(blob).split(b"\n") if len(blob) else []
    for line in lines:
        sid, status, kind, services, opened = json.loads(line)
        entry = out[sid] = StructureEntry(status=one(status, status), kind=one(kind, kind))
        for svc_id, code, active in services:
            pair = (svc_id, active)
            entry.services[code] = entry.folded[code.strip().lower()] = pair
            entry.codes[svc_id] = code
        if opened:
            keys = ((one(space, space), scope) for space, scope in opened)
            entry.opened = frozenset(one(key, key) for key in keys)  # lists in JSON
    return out


class Snapshot:
    """A snapshot's buffer (a read-only mapping of its file, or bytes), read in
    place: nothing is copied but the structures."""

    def __init__(self, buffer: Any) -> None:
        self.buffer = buffer
        view = memoryview(buffer)
        if len(view) < _HEADER.size:
            raise SnapshotError("not an index snapshot (too short)")
        magic, fmt, head_len = _HEADER.unpack_from(view)
        if magic != MAGIC or fmt != FORMAT:
            raise SnapshotError("not an index snapshot of this format")
        try:
            description = json.loads(bytes(view[_HEADER.size : _HEADER.size + head_len]))
        except ValueError as exc:
            raise SnapshotError("a damaged index snapshot (its description)") from exc
        base = _aligned(_HEADER.size + head_len)
        # Every byte is checked before any is believed: a damaged file (a disk
        # error, a copy cut short) is refused whole, never read as facts.
        if hashlib.sha256(view[base:]).hexdigest() != description.get("sha256"):
            raise SnapshotError("a damaged index snapshot (its checksum differs)")
        self.revision: int = description["revision"]
        self.fingerprint: str = description["fingerprint"]
        self.statuses: list[str] = description["statuses"]
        self.roles: list[str] = description["roles"]
        self.spaces: list[str] = description["spaces"]
        self._views: list[memoryview] = [view]
        arrays: dict[str, memoryview] = {}
        for name, (offset, code, length) in description["arrays"].items():
            start = base + offset
            size = array.array(code).itemsize
            arrays[name] = view[start : start + length * size].cast(code)
        self.user_ids = arrays["user_ids"]
        self.user_status = arrays["user_status"]
        self.status_by_id = arrays["status_by_id"]
        self.m_by_user = arrays["m_by_user"]
        self.m_key = arrays["m_key"]
        self.m_att = arrays["m_att"]
        self.m_sub = arrays["m_sub"]
        self.m_by_structure = arrays["m_by_structure"]
        self.a_id = arrays["a_id"]
        self.a_scope = arrays["a_scope"]
        self.a_days = arrays["a_days"]
        self.s_slot = arrays["s_slot"]
        self.s_packed = arrays["s_packed"]
        self._views.extend(arrays.values())
        start, length = description["structures"]
        self._structures = view[base + start : base + start + length]
        self._views.append(self._structures)
        self.n_users = len(self.user_ids)
        self.n_memberships = len(self.m_key)
        self.n_ids = len(self.status_by_id)  # user ids 0 .. n_ids - 1 have a slot
        # By code: the rank of each role (authz/roles.py), each space's code.
        # (-1: a role authz/roles.py does not know, refused when met, as the
        # dict index's KeyError is: an error, which denies)
        self.role_ranks = [RANK.get(role, -1) for role in self.roles]
        self.space_codes = {space: code for code, space in enumerate(self.spaces)}

    def structures(self) -> dict[int, StructureEntry]:
        return structure_entries(self._structures)

    def release(self) -> None:
        """Let go of the views and close the mapping. Only for a snapshot no
        index reads: one that is served from is simply dropped (the mapping
        closes with its last reference)."""
        for view in reversed(self._views):
            view.release()
        self._views = []
        close = getattr(self.buffer, "close", None)
        if close is not None:
            close()

    # Look-ups

    def has_user(self, user_id: int) -> bool:
        return 0 < user_id < self.n_ids and self.status_by_id[user_id] >= 0

    def membership_position(self, user_id: int, structure_id: int) -> int:
        """The position of the (user, structure) membership in m_key, or -1."""
        if not 0 < user_id < self.n_ids:
            return -1
        key = user_id << 32 | structure_id
        keys = self.m_key
        for i in range(self.m_by_user[user_id], self.m_by_user[user_id + 1]):
            if keys[i] == key:
                return i
        return -1

    def membership(self, i: int, dates: dict[int, dt.date]) -> Membership:
        """The i-th membership as the dict index holds it."""
        roles, spaces = self.roles, self.spaces
        attachments = []
        for j in range(self.m_att[i], self.m_att[i + 1]):
            scope, days = self.a_scope[j], self.a_days[j]
            until = days & _LOW
            attachments.append(
                AttachmentEntry(
                    self.a_id[j],
                    (scope >> 8) or None,
                    roles[scope & 0xFF],
                    _day(dates, days >> 32),
                    _day(dates, until) if until else None,
                )
            )
        s_slot, s_packed = self.s_slot, self.s_packed
        subscriptions = {
            (spaces[s_slot[j] >> 32], (s_slot[j] & _LOW) or None): s_packed[j]
            for j in range(self.m_sub[i], self.m_sub[i + 1])
        }
        return Membership(attachments, subscriptions)

    def structures_of(self, user_id: int) -> Iterator[int]:
        """The structures the user has a membership on, in order."""
        if not 0 < user_id < self.n_ids:
            return
        keys = self.m_key
        for i in range(self.m_by_user[user_id], self.m_by_user[user_id + 1]):
            yield keys[i] & _LOW

    def members_of(self, structure_id: int) -> Iterator[int]:
        """The users with a membership on the structure, in order."""
        keys, perm = self.m_key, self.m_by_structure

        def structure_of(i: int) -> int:
            return keys[i] & _LOW

        lo = bisect_left(perm, structure_id, key=structure_of)
        hi = bisect_right(perm, structure_id, lo=lo, key=structure_of)
        for p in range(lo, hi):
            yield keys[perm[p]] >> 32


def _day(dates: dict[int, dt.date], ordinal: int) -> dt.date:
    found = dates.get(ordinal)
    if found is None:
        found = dates[ordinal] = dt.date.fromordinal(ordinal)
    return found


def fingerprint_of(rows: list[tuple[Any, ...]]) -> str:
    """What identifies a revision in a database: its change-log rows (their ids,
    scopes, keys and times), hashed. The same number in a database restored
    from an older backup, or recreated, names other rows."""
    h = hashlib.sha256()
    for row in sorted(rows, key=repr):
        h.update(repr(tuple(row)).encode())
        h.update(b"\n")
    return h.hexdigest()


# --- the index over a snapshot ---------------------------------------------------


class _Users(Mapping[int, str]):
    """user id -> status: the overlay, else the snapshot."""

    def __init__(self, snapshot: Snapshot, overlay: dict[int, Any]) -> None:
        self._s = snapshot
        self._overlay = overlay
        self._by_id, self._n, self._statuses = (
            snapshot.status_by_id,
            snapshot.n_ids,
            snapshot.statuses,
        )

    def get(self, user_id: int, default: Any = None) -> Any:
        """The status, or `default`: every question asks it."""
        found = self._overlay.get(user_id, _MISSING)
        if found is not _MISSING:
            return default if found is _GONE else found
        if type(user_id) is not int or not 0 < user_id < self._n:
            return default
        code = self._by_id[user_id]
        return default if code < 0 else self._statuses[code]

    def __getitem__(self, user_id: int) -> str:
        found = self.get(user_id, _MISSING)
        if found is _MISSING:
            raise KeyError(user_id)
        return str(found)

    def __contains__(self, user_id: object) -> bool:
        return self.get(user_id, _MISSING) is not _MISSING  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        overlay = self._overlay
        for uid in self._s.user_ids:
            if overlay.get(uid, _MISSING) is not _GONE:
                yield uid
        for uid, status in overlay.items():
            if status is not _GONE and not self._s.has_user(uid):
                yield uid

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Memberships(Mapping[tuple[int, int], Membership]):
    """(user id, structure id) -> Membership: the overlay, else the snapshot."""

    def __init__(self, snapshot: Snapshot, overlay: dict[tuple[int, int], Any]) -> None:
        self._s = snapshot
        self._overlay = overlay
        self._dates: dict[int, dt.date] = {}

    def get(self, key: tuple[int, int], default: Any = None) -> Any:
        found = self._overlay.get(key, _MISSING)
        if found is not _MISSING:
            return default if found is _GONE else found
        uid, sid = key
        if type(uid) is not int or type(sid) is not int or not 0 < sid <= MAX_ID:
            return default
        s = self._s
        i = s.membership_position(uid, sid)
        return default if i < 0 else s.membership(i, self._dates)

    def __getitem__(self, key: tuple[int, int]) -> Membership:
        found: Membership = self.get(key, _MISSING)
        if found is _MISSING:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        overlay = self._overlay
        for k in self._s.m_key:
            key = (k >> 32, k & _LOW)
            if overlay.get(key, _MISSING) is not _GONE:
                yield key
        for key, found in overlay.items():
            if found is not _GONE and self._s.membership_position(*key) < 0:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)


class CompactIndex:
    """The facts of the current revision over a snapshot, with the same
    reading interface as index.Index (users, structures, memberships,
    members/structures_for) and the same reloads, which land in the overlay.
    Mutated only under Decider's lock."""

    compact = True

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.base_revision = snapshot.revision
        self._user_overlay: dict[int, Any] = {}
        self._membership_overlay: dict[tuple[int, int], Any] = {}
        # Membership keys changed since the snapshot, by user and by structure.
        self._changed_by_user: dict[int, set[int]] = {}
        self._changed_by_structure: dict[int, set[int]] = {}
        self.users = _Users(snapshot, self._user_overlay)
        self.memberships = _Memberships(snapshot, self._membership_overlay)
        self.structures: dict[int, StructureEntry] = snapshot.structures()
        self._n_users = snapshot.n_users
        self._n_memberships = snapshot.n_memberships
        self._ordinals: dict[dt.date, int] = {}

    def facts(
        self, user_id: int, structure_id: int, service_id: int | None, space: str, today: dt.date
    ) -> MembershipFacts:
        """What a space question needs of the (user, structure) membership
        (index.MembershipFacts), read from the arrays in place: the same as
        index.membership_facts on the membership the snapshot holds, without
        making its objects (the overlay's memberships are objects: read so)."""
        found = self._membership_overlay.get((user_id, structure_id), _MISSING)
        if found is not _MISSING:
            if found is _GONE:
                return NO_FACTS
            return membership_facts(found, service_id, space, today)
        s = self.snapshot
        if (
            type(user_id) is not int
            or type(structure_id) is not int
            or not (0 < user_id < s.n_ids and 0 < structure_id <= MAX_ID)
        ):
            return NO_FACTS
        key = user_id << 32 | structure_id  # Snapshot.membership_position, inlined
        keys = s.m_key
        for i in range(s.m_by_user[user_id], s.m_by_user[user_id + 1]):
            if keys[i] == key:
                break
        else:
            return NO_FACTS
        day = self._ordinals.get(today)
        if day is None:
            day = self._ordinals[today] = today.toordinal()
        wanted = 0 if service_id is None else service_id  # 0 is no service: matches none
        whole = on_service = dated = False
        role = attachment_id = None
        best = 0
        a_days, a_scope, ranks = s.a_days, s.a_scope, s.role_ranks
        # (service id << 8 | role code; first day << 32 | last day, 0: open-ended)
        for j in range(s.m_att[i], s.m_att[i + 1]):  # all validated: the strongest in force
            days = a_days[j]
            until = days & _LOW
            if days >> 32 > day or (until and until < day):
                dated = dated or a_scope[j] >> 8 in (0, wanted)
                continue
            scope = a_scope[j]
            svc = scope >> 8
            if svc == 0:
                whole = True
            elif svc == wanted:
                on_service = True
            else:
                continue
            rank = ranks[scope & 0xFF]
            if rank < 0:
                raise KeyError(s.roles[scope & 0xFF])
            if rank > best:
                best, role, attachment_id = rank, s.roles[scope & 0xFF], s.a_id[j]
        all_sub = svc_sub = None
        code = s.space_codes.get(space, -1)
        if code >= 0:
            # (space code << 32 | service id, 0: every service)
            every, one = code << 32, code << 32 | wanted if wanted else -1
            s_slot = s.s_slot
            for j in range(s.m_sub[i], s.m_sub[i + 1]):
                slot = s_slot[j]
                if slot == every:
                    all_sub = s.s_packed[j]
                elif slot == one:
                    svc_sub = s.s_packed[j]
        return whole, on_service, role, attachment_id, all_sub, svc_sub, dated

    def sizes(self) -> dict[str, int]:
        return {
            "users": self._n_users,
            "structures": len(self.structures),
            "memberships": self._n_memberships,
        }

    @property
    def overlay_size(self) -> int:
        """Keys the overlay holds (what this worker has of its own)."""
        return len(self._user_overlay) + len(self._membership_overlay)

    # Reloads (see index.Index): a few keys at a time, into the overlay.

    def reload_user(self, session: Session, user_id: int) -> None:
        status = session.scalar(select(User.status).where(User.id == user_id))
        was = user_id in self.users
        self._user_overlay[user_id] = _GONE if status is None else status
        self._n_users += (status is not None) - was

    def reload_structure(self, session: Session, structure_id: int) -> None:
        entry = read_structure(session, structure_id)
        if entry is None:
            self.structures.pop(structure_id, None)
        else:
            self.structures[structure_id] = entry

    def reload_membership(self, session: Session, user_id: int, structure_id: int) -> None:
        self.reload_user(session, user_id)
        found = read_membership(session, user_id, structure_id)
        was = (user_id, structure_id) in self.memberships
        self._n_memberships += (found is not None) - was
        self._membership_overlay[(user_id, structure_id)] = _GONE if found is None else found
        self._changed_by_user.setdefault(user_id, set()).add(structure_id)
        self._changed_by_structure.setdefault(structure_id, set()).add(user_id)

    # Enumerations

    def structures_for(self, user_id: int) -> list[int]:
        held = set(self.snapshot.structures_of(user_id))
        for sid in self._changed_by_user.get(user_id, ()):
            if self._membership_overlay[(user_id, sid)] is _GONE:
                held.discard(sid)
            else:
                held.add(sid)
        return sorted(held)

    def members(self, structure_id: int) -> list[int]:
        held = set(self.snapshot.members_of(structure_id))
        for uid in self._changed_by_structure.get(structure_id, ()):
            if self._membership_overlay[(uid, structure_id)] is _GONE:
                held.discard(uid)
            else:
                held.add(uid)
        return sorted(held)

    def users_with_memberships(self) -> list[int]:
        held = {k >> 32 for k in self.snapshot.m_key}
        for uid in self._changed_by_user:
            if self.structures_for(uid):
                held.add(uid)
            else:
                held.discard(uid)
        return sorted(held)
