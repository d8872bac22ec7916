"""The decision log: which decisions were taken for whom, recorded off the hot
path, kept AUTHZ_DECISION_LOG_RETENTION_DAYS, read by the security team
(docs/operations.md, "Decision log").

What is recorded is AUTHZ_DECISION_LOG: `off`, `sampled` (each decision with
probability AUTHZ_DECISION_LOG_SAMPLE_RATE) or `all`; with
AUTHZ_DECISION_LOG_DENIALS every denial too, whatever the mode. A request
appends plain tuples to an in-memory buffer (no database, no lock of its own);
a background thread of the process writes what is buffered every
AUTHZ_DECISION_LOG_FLUSH_SECONDS in one transaction (a binary COPY of a row
per decision on PostgreSQL; on SQLite a row per request, its decisions packed
as JSON when there are several: docs/decisions.md, "Decision log on SQLite"),
and once more when the process stops; with AUTHZ_DECISION_LOG_STREAM it also writes each record
as a log line (JSON lines for a SIEM with AUTHZ_LOG_FORMAT=json). A full
buffer, or a write that fails, drops records: the decision is never delayed
or refused for its record, and the drop is counted
(authz_decision_log_dropped_total) and logged.
"""

from __future__ import annotations

import atexit
import collections
import csv
import datetime as dt
import heapq
import io
import itertools
import json
import logging
import operator
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Select, cast, delete, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from models import DecisionRecord, utcnow

from . import logs, metrics
from .config import Settings
from .db import rowcount
from .pagination import Page

chain = itertools.chain.from_iterable
log = logging.getLogger("authz.decision_log")
# The records themselves, one line each, with AUTHZ_DECISION_LOG_STREAM.
stream_log = logging.getLogger("authz.decision_log.records")

# The columns of a record, in the order of the buffered tuples and of the CSV export.
COLUMNS = (
    "decided_at",
    "api",
    "client_id",
    "caller_user_id",
    "user_id",
    "structure_id",
    "service",
    "space",
    "action",
    "allowed",
    "rule",
    "reason",
    "revision",
    "policy_version",
    "request_id",
)
_TEXT_MAX = 300
# The columns a request's decisions share (a packed row's own), and each
# decision's.
HEAD_COLUMNS = ("decided_at", "api", "client_id", "caller_user_id", "request_id")
ITEM_COLUMNS = tuple(c for c in COLUMNS if c not in HEAD_COLUMNS)
# A packed row's JSON (SQLite: a request of several decisions) is an object:
# for each question field a list of one element per decision, or the one value
# they all have; "decision", a list indexing "decisions": the distinct
# answers, each [allowed, rule, reason, revision, policy_version]. Decision i
# is then user_id[i], structure_id[i], service[i], space[i], action[i],
# decisions[decision[i]].
QUESTION_KEYS = ("user_id", "structure_id", "service", "space", "action")
# The columns are the constants above; the driver binds every value.
_INSERT = (
    f"INSERT INTO decision_log ({', '.join(COLUMNS)}) "  # noqa: S608  (constants, no value)
    f"VALUES ({', '.join(['{mark}'] * len(COLUMNS))})"
)

# SQLite: a request of one decision is a row (_FLAT_ROWS rows a statement,
# under the 999 bound values of older SQLite builds); a request of several is
# one packed row. Every row is given its id: a packed row's is its last
# decision's, and the ids before it are its other decisions'.
_FLAT_ROWS = 62
_ID_COLUMNS = ("id", *COLUMNS)
_INSERT_FLAT = (
    f"INSERT INTO decision_log ({', '.join(_ID_COLUMNS)}) VALUES "  # noqa: S608  (constants)
    + ", ".join([f"({', '.join(['?'] * len(_ID_COLUMNS))})"] * _FLAT_ROWS)
)
_INSERT_ONE = (
    f"INSERT INTO decision_log ({', '.join(_ID_COLUMNS)}) "  # noqa: S608  (constants)
    f"VALUES ({', '.join(['?'] * len(_ID_COLUMNS))})"
)
_PACKED_COLUMNS = ("id", *HEAD_COLUMNS, "user_id", "structure_id", "packed")
_INSERT_PACKED = (
    f"INSERT INTO decision_log ({', '.join(_PACKED_COLUMNS)}) "  # noqa: S608  (constants)
    f"VALUES ({', '.join(['?'] * len(_PACKED_COLUMNS))})"
)
# The packed decisions' JSON: compact, UTF-8 as is (the column is text).
_PACK = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode

# PostgreSQL: COPY in binary, each value sent as the column's type (in the
# order of COLUMNS; tests/test_decision_log.py checks them against the table).
_COPY = f"COPY decision_log ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
COPY_TYPES = (
    "timestamptz",
    "varchar",
    "int4",
    "int4",
    "int4",
    "int4",
    "varchar",
    "varchar",
    "varchar",
    "bool",
    "varchar",
    "varchar",
    "int8",
    "int4",
    "varchar",
)


def _sqlite_time(value: dt.datetime) -> str:
    """A UTC time as models.base.UTCDateTime stores it on SQLite (naive, ISO text)."""
    return value.replace(tzinfo=None).isoformat(sep=" ")


class Recorder:
    """One per process: decides what is recorded, buffers it, writes it."""

    def __init__(
        self, engine: Engine, settings: Settings, draw: Callable[[], float] = random.random
    ) -> None:
        """`draw`: the sampling draw, uniform in [0, 1) (tests give their own)."""
        self.engine = engine
        self.mode = settings.decision_log
        self.rate = settings.decision_log_sample_rate
        self.denials = settings.decision_log_denials
        self.capacity = settings.decision_log_buffer
        self.period = settings.decision_log_flush_seconds
        self.stream = settings.decision_log_stream
        self.enabled = self.mode != "off" or self.denials
        # One entry per request: (time, api, client, caller user, request id,
        # questions, decisions).
        self._buffer: collections.deque[tuple] = collections.deque()
        # Records buffered (approximate under threads: it only bounds the buffer).
        self._queued = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._draw = draw

    def wanted(self, allowed: bool) -> bool:
        """Whether a decision with this answer is recorded (the sampling draw)."""
        if self.mode == "all" or (self.denials and not allowed):
            return True
        return self.mode == "sampled" and self._draw() < self.rate

    def record(self, api: str, caller: Any, answered: Iterable[tuple[Any, Any]]) -> None:
        """Buffer the (question, decision) pairs of one request that are to be
        recorded (see record_lists). Never raises, never waits."""
        if not self.enabled:
            return
        pairs = list(answered)
        self.record_lists(api, caller, [q for q, _d in pairs], [d for _q, d in pairs])

    def record_lists(
        self, api: str, caller: Any, questions: Sequence[Any], decisions: Sequence[Any]
    ) -> None:
        """Buffer the decisions of one request that are to be recorded,
        `decisions[i]` answering `questions[i]`. `caller` has client_id and
        user_id; a question has user_id, structure_id, space, action, service;
        a decision (immutable) allowed, rule, reason, revision, policy_version.
        The hot path: one entry per request holding the two lists, rows are
        made by the writer. Never raises, never waits."""
        if not self.enabled:
            return
        try:
            if self.mode == "all":
                questions, decisions = list(questions), list(decisions)
            else:
                kept = [i for i, d in enumerate(decisions) if self.wanted(d.allowed)]
                questions = [questions[i] for i in kept]
                decisions = [decisions[i] for i in kept]
            n = len(questions)
            if not n:
                return
            if self._queued + n > self.capacity:
                metrics.get().decision_log_dropped.inc(n)
                return
            self._queued += n
            self._buffer.append(
                (
                    time.time(),
                    api,
                    caller.client_id,
                    caller.user_id,
                    logs.context().get("request_id"),
                    questions,
                    decisions,
                )
            )
            if self._thread is None:
                self._ensure_started()
            if self._queued >= self.capacity // 2:
                # Written now rather than at the period's end: a busy worker
                # fills the buffer in well under a period (about 100,000
                # decisions a second in batches), and a full buffer drops.
                self._wake.set()
        except Exception:
            log.exception("decision log: a record could not be buffered")

    def _take(self) -> list[tuple]:
        """Take what is buffered: one entry per request."""
        entries = []
        buffer = self._buffer
        while buffer:
            entry = buffer.popleft()
            self._queued -= len(entry[5])
            entries.append(entry)
        return entries

    @property
    def pending(self) -> int:
        """Records buffered, not yet written."""
        return sum(len(entry[5]) for entry in list(self._buffer))

    @property
    def started(self) -> bool:
        """Whether the background writer was started (on the first record)."""
        return self._thread is not None

    def _ensure_started(self) -> None:
        """Start the writer, once (record() calls this while none is started)."""
        with self._start_lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="authz-decision-log", daemon=True
                )
                self._thread.start()
                atexit.register(self.close)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.period)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write what is buffered now, in one transaction; the number of decisions written."""
        with self._write_lock:
            entries = self._take()
            count = sum(len(entry[5]) for entry in entries)
            if not count:
                return 0
            sqlite = self.engine.dialect.name == "sqlite"
            rows = _rows(entries) if self.stream or not sqlite else []
            if self.stream:
                for row in rows:
                    record = dict(zip(COLUMNS, row, strict=True))
                    record["decided_at"] = row[0].isoformat()
                    stream_log.info("decision", extra={"decision": record})
            try:
                with self.engine.begin() as conn:
                    if sqlite:
                        _insert_sqlite(conn, entries)
                    elif conn.dialect.driver == "psycopg":
                        _copy(conn, rows)
                    else:
                        # The driver's executemany: no per-row work in Python.
                        conn.exec_driver_sql(_INSERT.format(mark="%s"), rows)
            except Exception as exc:  # noqa: BLE001  (dropped and counted, never raised)
                metrics.get().decision_log_dropped.inc(count)
                # Not log.exception: the error's text holds the statement's parameters.
                log.error(  # noqa: TRY400
                    "decision log: %d record(s) dropped: %s", count, type(exc).__name__
                )
                return 0
            metrics.get().decision_log_written.inc(count)
            return count

    def close(self) -> None:
        """Stop the writer and write what remains (at shutdown)."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, self.period * 2))
        self.flush()


def _utc(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, dt.UTC)


def _sqlite_stamp(at: float) -> str:
    return _sqlite_time(_utc(at))


def _rows(entries: list[tuple], stamp: Callable[[float], Any] = _utc) -> list[tuple]:
    """A row per decision, in the order of COLUMNS, its time made by `stamp`
    (PostgreSQL's COPY, SQLite's requests of one decision, the stream): each
    row made at once, no tuples joined. About 0.3 µs a row."""
    rows = []
    for at, api, client_id, caller_user_id, request_id, questions, decisions in entries:
        when = stamp(at)
        rows += [
            (
                when,
                api,
                client_id,
                caller_user_id,
                q.user_id,
                q.structure_id,
                q.service,
                q.space,
                q.action,
                d.allowed,
                _short(d.rule),
                _short(d.reason),
                d.revision,
                d.policy_version,
                request_id,
            )
            for q, d in zip(questions, decisions, strict=True)
        ]
    return rows


def _insert_sqlite(conn: Connection, entries: list[tuple]) -> None:
    """SQLite, in the connection's transaction (BEGIN IMMEDIATE: the write lock
    is held, so the ids given here are free): a request of one decision is one
    row, _FLAT_ROWS rows a statement; a request of several is one packed row
    (_pack). SQLite's insert costs the worker 4 to 5 µs a row whatever the
    row holds, the packing under 1 µs a decision (docs/performance.md,
    "Observability")."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    last = cursor.execute("SELECT max(id) FROM decision_log").fetchone()[0] or 0
    singles: list[tuple] = []
    single_ids: list[int] = []
    packed: list[tuple] = []
    for at, api, client_id, caller_user_id, request_id, questions, decisions in entries:
        last += len(questions)
        if len(questions) == 1:
            singles.append((at, api, client_id, caller_user_id, request_id, questions, decisions))
            single_ids.append(last)
            continue
        packed.append(
            (
                last,
                _sqlite_stamp(at),
                api,
                client_id,
                caller_user_id,
                request_id,
                *_pack(questions, decisions),
            )
        )
    rows = _rows(singles, _sqlite_stamp)
    flat = [(i, *row) for i, row in zip(single_ids, rows, strict=True)]
    whole = len(flat) - len(flat) % _FLAT_ROWS
    for i in range(0, whole, _FLAT_ROWS):
        cursor.execute(_INSERT_FLAT, list(chain(flat[i : i + _FLAT_ROWS])))
    if whole < len(flat):
        cursor.executemany(_INSERT_ONE, flat[whole:])
    if packed:
        cursor.executemany(_INSERT_PACKED, packed)


_QUESTION_FIELDS = tuple(operator.attrgetter(key) for key in QUESTION_KEYS)


def _pack(questions: list[Any], decisions: list[Any]) -> tuple[int | None, int | None, str]:
    """A request's decisions as one packed row's user_id, structure_id (each
    the value all its decisions share, or None) and JSON (see QUESTION_KEYS).
    Column by column in C loops (map), each distinct decision once, a column
    of one value as that value: about 0.8 µs a decision, against 1.9 µs for
    an array per decision (docs/performance.md, "Observability")."""
    n = len(questions)
    packed: dict[str, Any] = {}
    for key, field in zip(QUESTION_KEYS, _QUESTION_FIELDS, strict=True):
        values = list(map(field, questions))
        packed[key] = values[0] if values.count(values[0]) == n else values
    ids = list(map(id, decisions))
    distinct = dict(zip(ids, decisions, strict=True))
    index = {key: i for i, key in enumerate(distinct)}
    packed["decision"] = list(map(index.__getitem__, ids))
    packed["decisions"] = [
        (d.allowed, _short(d.rule), _short(d.reason), d.revision, d.policy_version)
        for d in distinct.values()
    ]
    user, structure = packed["user_id"], packed["structure_id"]
    return (
        None if isinstance(user, list) else user,
        None if isinstance(structure, list) else structure,
        _PACK(packed),
    )


def _copy(conn: Connection, rows: list[tuple]) -> None:
    """PostgreSQL: the rows through a binary COPY, in the connection's
    transaction. What it costs the writer's process a row, measured: 0.4 µs,
    against 2.2 µs for a text COPY and over 9 µs for an INSERT's executemany
    (docs/performance.md, "Observability")."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(_COPY) as copy:
        copy.set_types(COPY_TYPES)
        for row in rows:
            copy.write_row(row)


def _short(text: str | None) -> str | None:
    return text if text is None or len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 1] + "…"


# --- reading and pruning ----------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    user_id: int | None = None
    structure_id: int | None = None
    service: str | None = None
    space: str | None = None
    action: str | None = None
    allowed: bool | None = None
    client_id: int | None = None
    api: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """One decision as read from the log: `id`, then the fields of COLUMNS."""

    id: int
    decided_at: dt.datetime
    api: str
    client_id: int | None
    caller_user_id: int | None
    user_id: int | None
    structure_id: int | None
    service: str | None
    space: str | None
    action: str
    allowed: bool
    rule: str | None
    reason: str | None
    revision: int
    policy_version: int | None
    request_id: str | None


_TABLE = DecisionRecord.__table__.c
_READ = (_TABLE.id, *(_TABLE[name] for name in COLUMNS), _TABLE.packed)
_NEWEST_FIRST = (_TABLE.decided_at.desc(), _TABLE.id.desc())
# A decision's own fields a filter may name, and where a packed decision has them.
_ITEM_FILTERS = ("user_id", "structure_id", "service", "space", "action")
_ITEM_AT = {name: ITEM_COLUMNS.index(name) for name in (*_ITEM_FILTERS, "allowed")}


def _shared(filters: Filters) -> list[Any]:
    """The conditions on what a request's decisions share (every row)."""
    where = []
    for name in ("client_id", "api"):
        value = getattr(filters, name)
        if value is not None:
            where.append(_TABLE[name] == value)
    if filters.since is not None:
        where.append(_TABLE.decided_at >= filters.since)
    if filters.until is not None:
        where.append(_TABLE.decided_at < filters.until)
    return where


def _single(filters: Filters) -> Select:
    """The one-decision rows matching `filters`, newest first."""
    stmt = select(*_READ).where(_TABLE.packed.is_(None), *_shared(filters))
    for name in _ITEM_FILTERS:
        value = getattr(filters, name)
        if value is not None:
            stmt = stmt.where(_TABLE[name] == value)
    if filters.allowed is not None:
        stmt = stmt.where(_TABLE.allowed.is_(filters.allowed))
    return stmt.order_by(*_NEWEST_FIRST)


def _packed(filters: Filters) -> Select:
    """The packed rows that may hold decisions matching `filters`, newest
    first: a row's user_id / structure_id is what all its decisions share, or
    NULL."""
    stmt = select(*_READ).where(_TABLE.packed.is_not(None), *_shared(filters))
    for name in ("user_id", "structure_id"):
        value = getattr(filters, name)
        if value is not None:
            stmt = stmt.where(_TABLE[name].is_(None) | (_TABLE[name] == value))
    return stmt.order_by(*_NEWEST_FIRST)


def unpack(text: str) -> list[tuple]:
    """A packed row's decisions, each a tuple in the order of ITEM_COLUMNS."""
    packed = json.loads(text)
    which = packed["decision"]
    n = len(which)
    answers = [tuple(a) for a in packed["decisions"]]
    columns = [
        value if isinstance(value, list) else [value] * n
        for value in (packed[key] for key in QUESTION_KEYS)
    ]
    return [(*question, *answers[k]) for *question, k in zip(*columns, which, strict=True)]


def _unpacked(rows: Iterable[Any], filters: Filters) -> Iterator[Record]:
    """The decisions of packed rows that match `filters`, newest first (a
    row's last decision has the row's id, the others the ids before it)."""
    wanted = [(_ITEM_AT[name], getattr(filters, name)) for name in _ITEM_FILTERS]
    wanted = [(at, value) for at, value in wanted if value is not None]
    if filters.allowed is not None:
        wanted.append((_ITEM_AT["allowed"], filters.allowed))
    for row in rows:
        items = unpack(row.packed)
        first = row.id - len(items) + 1
        head = (row.decided_at, row.api, row.client_id, row.caller_user_id)
        for i in range(len(items) - 1, -1, -1):
            item = items[i]
            if all(item[at] == value for at, value in wanted):
                yield Record(first + i, *head, *item, row.request_id)  # type: ignore[call-arg]


def _stream(session: Session, stmt: Select, chunk: int) -> Iterator[Any]:
    yield from session.execute(stmt.execution_options(yield_per=chunk))


def _merged(singles: Iterable[Any], unpacked: Iterator[Record]) -> Iterator[Record]:
    """Both kinds of records, newest first (ids are unique across them)."""
    return heapq.merge(
        (Record(*row[:-1]) for row in singles),
        unpacked,
        key=lambda r: (r.decided_at, r.id),
        reverse=True,
    )


def iter_records(session: Session, filters: Filters, chunk: int = 1000) -> Iterator[Record]:
    """Every record matching `filters` (since inclusive, until exclusive),
    newest first, read in chunks."""
    packed = _unpacked(_stream(session, _packed(filters), chunk), filters)
    yield from _merged(_stream(session, _single(filters), chunk), packed)


def count(session: Session, filters: Filters) -> int:
    """How many decisions match `filters` (the packed ones counted one by one)."""
    singles = session.scalar(select(func.count()).select_from(_single(filters).subquery()))
    packed = _unpacked(_stream(session, _packed(filters), 1000), filters)
    return (singles or 0) + sum(1 for _ in packed)


def list_records(session: Session, filters: Filters, *, page: int, page_size: int) -> Page:
    """One page of the records matching `filters`, newest first."""
    offset = (page - 1) * page_size
    singles = session.execute(_single(filters).limit(offset + page_size)).all()
    packed = _unpacked(_stream(session, _packed(filters), 1000), filters)
    items = list(itertools.islice(_merged(singles, packed), offset, offset + page_size))
    return Page(items=items, page=page, page_size=page_size, total=count(session, filters))


def as_dict(record: Record) -> dict[str, Any]:
    return {"id": record.id, **{name: getattr(record, name) for name in COLUMNS}}


def to_csv(records: Iterable[Record]) -> Iterator[str]:
    """A header row, then one row per record (CSV, streamed)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("id", *COLUMNS))
    yield out.getvalue()
    for record in records:
        out.seek(0)
        out.truncate()
        row = as_dict(record)
        row["decided_at"] = row["decided_at"].isoformat()
        writer.writerow([_cell(v) for v in row.values()])
        yield out.getvalue()


def _cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet will not run as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


def prune(session: Session, retention_days: int, now: dt.datetime | None = None) -> int:
    """Delete the records older than `retention_days`; how many decisions
    (those of a packed row counted one by one). The caller commits."""
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    old = _TABLE.decided_at < cutoff
    if session.get_bind().dialect.name == "postgresql":
        length = func.json_array_length(cast(_TABLE.packed, postgresql.JSON)["decision"])
    else:
        length = func.json_array_length(_TABLE.packed, "$.decision")
    packed_rows, in_packed = session.execute(
        select(func.count(), func.coalesce(func.sum(length), 0)).where(
            _TABLE.packed.is_not(None), old
        )
    ).one()
    rows = rowcount(
        session.execute(
            delete(DecisionRecord).where(old),
            execution_options={"synchronize_session": False},
        )
    )
    return int(rows - packed_rows + in_packed)
