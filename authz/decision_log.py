"""The decision log: which decisions were taken for whom, recorded off the hot
path, kept AUTHZ_DECISION_LOG_RETENTION_DAYS, read by the security team
(docs/operations.md, "Decision log").

What is recorded is AUTHZ_DECISION_LOG: `off`, `sampled` (each decision with
probability AUTHZ_DECISION_LOG_SAMPLE_RATE) or `all`; with
AUTHZ_DECISION_LOG_DENIALS every denial too, whatever the mode. A request
appends plain tuples to an in-memory buffer (no database, no lock of its own);
a background thread of the process writes what is buffered every
AUTHZ_DECISION_LOG_FLUSH_SECONDS in one transaction (a binary COPY on
PostgreSQL, multi-row INSERTs on SQLite), and once more when
the process stops; with AUTHZ_DECISION_LOG_STREAM it also writes each record
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
import io
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, select
from sqlalchemy.orm import Session

from models import DecisionRecord, utcnow

from . import logs, metrics
from .config import Settings
from .db import rowcount
from .pagination import Page, paginate

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
# The columns are the constants above; the driver binds every value.
_INSERT = (
    f"INSERT INTO decision_log ({', '.join(COLUMNS)}) "  # noqa: S608  (constants, no value)
    f"VALUES ({', '.join(['{mark}'] * len(COLUMNS))})"
)

# SQLite: multi-row INSERTs (fewer statements' steps, and a request's head bound
# once), each under the 999 bound values of older SQLite builds.
HEAD_COLUMNS = ("decided_at", "api", "client_id", "caller_user_id", "request_id")
ITEM_COLUMNS = tuple(c for c in COLUMNS if c not in HEAD_COLUMNS)
_GROUP_ROWS = 96
_INSERT_GROUP = (
    f"INSERT INTO decision_log ({', '.join(HEAD_COLUMNS + ITEM_COLUMNS)}) "  # noqa: S608  (constants)
    f"SELECT {', '.join(['?'] * len(HEAD_COLUMNS))}, "
    f"{', '.join(f'column{i + 1}' for i in range(len(ITEM_COLUMNS)))} FROM (VALUES "
    + ", ".join([f"({', '.join(['?'] * len(ITEM_COLUMNS))})"] * _GROUP_ROWS)
    + ")"
)
_FLAT_ROWS = 64
_INSERT_FLAT = (
    f"INSERT INTO decision_log ({', '.join(COLUMNS)}) VALUES "  # noqa: S608  (constants)
    + ", ".join([f"({', '.join(['?'] * len(COLUMNS))})"] * _FLAT_ROWS)
)

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


@dataclass(frozen=True)
class Asked:
    """A question as recorded (the decision APIs' questions have these fields)."""

    user_id: int | None
    structure_id: int | None
    space: str | None
    action: str
    service: str | None = None


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
        # One entry per request: (time, api, client, caller user, request id, pairs).
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
        recorded. `caller` has client_id and user_id; a question has user_id,
        structure_id, space, action, service; a decision (immutable) allowed,
        rule, reason, revision, policy_version. The hot path: one entry per
        request, rows are made by the writer. Never raises, never waits."""
        if not self.enabled:
            return
        try:
            if self.mode == "all":
                pairs = list(answered)
            else:
                pairs = [(q, d) for q, d in answered if self.wanted(d.allowed)]
            if not pairs:
                return
            if self._queued + len(pairs) > self.capacity:
                metrics.get().decision_log_dropped.inc(len(pairs))
                return
            self._queued += len(pairs)
            self._buffer.append(
                (
                    time.time(),
                    api,
                    caller.client_id,
                    caller.user_id,
                    logs.context().get("request_id"),
                    pairs,
                )
            )
            if self._thread is None:
                self._ensure_started()
        except Exception:
            log.exception("decision log: a record could not be buffered")

    def _groups(self) -> list[tuple[tuple, list[tuple]]]:
        """Take what is buffered, one group per request (SQLite's writer): its
        head (the time as SQLite stores it, api, client, caller user, request
        id) and its items (the other columns, in the order of ITEM_COLUMNS).
        About 0.3 µs a row: the database's insert is what costs
        (docs/performance.md, "Observability")."""
        groups = []
        buffer = self._buffer
        while buffer:
            at, api, client_id, caller_user_id, request_id, pairs = buffer.popleft()
            self._queued -= len(pairs)
            when = _sqlite_time(dt.datetime.fromtimestamp(at, dt.UTC))
            items = [
                (
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
                )
                for q, d in pairs
            ]
            groups.append(((when, api, client_id, caller_user_id, request_id), items))
        return groups

    def _rows(self) -> list[tuple]:
        """Take what is buffered, as rows in the order of COLUMNS (PostgreSQL's
        COPY: each row made at once, no tuples joined)."""
        rows = []
        buffer = self._buffer
        while buffer:
            at, api, client_id, caller_user_id, request_id, pairs = buffer.popleft()
            self._queued -= len(pairs)
            when = dt.datetime.fromtimestamp(at, dt.UTC)
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
                for q, d in pairs
            ]
        return rows

    @property
    def pending(self) -> int:
        """Records buffered, not yet written."""
        return sum(len(entry[-1]) for entry in list(self._buffer))

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
        """Write what is buffered now, in one transaction; the number written."""
        with self._write_lock:
            sqlite = self.engine.dialect.name == "sqlite"
            groups: list[tuple[tuple, list[tuple]]] = []
            if sqlite:
                # A request's decisions apart from its head, bound once a statement.
                groups = self._groups()
                count = sum(len(items) for _head, items in groups)
                rows = _flat(groups) if self.stream else []
            else:
                rows = self._rows()
                count = len(rows)
            if not count:
                return 0
            if self.stream:
                for row in rows:
                    record = dict(zip(COLUMNS, row, strict=False))
                    record["decided_at"] = str(row[0]) if sqlite else row[0].isoformat()
                    stream_log.info("decision", extra={"decision": record})
            try:
                with self.engine.begin() as conn:
                    if sqlite:
                        _insert_sqlite(conn, groups)
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


def _flat(groups: list[tuple[tuple, list[tuple]]]) -> list[tuple]:
    """The groups' rows, each in the order of COLUMNS."""
    rows = []
    for (when, api, client_id, caller_user_id, request_id), items in groups:
        head = (when, api, client_id, caller_user_id)
        tail = (request_id,)
        rows += [head + item + tail for item in items]
    return rows


def _insert_sqlite(conn: Connection, groups: list[tuple[tuple, list[tuple]]]) -> None:
    """SQLite: multi-row INSERTs, in the connection's transaction. A request's
    items go _GROUP_ROWS at a time with its head bound once; what is left
    (single checks, the tail of a batch) goes _FLAT_ROWS full rows at a time,
    the last few through executemany. What it costs a row, measured: about half
    of one executemany of all the rows (docs/performance.md, "Observability")."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    rest: list[tuple] = []
    for head, items in groups:
        whole = len(items) - len(items) % _GROUP_ROWS
        for i in range(0, whole, _GROUP_ROWS):
            cursor.execute(_INSERT_GROUP, [*head, *chain(items[i : i + _GROUP_ROWS])])
        if whole < len(items):
            when, api, client_id, caller_user_id, request_id = head
            first = (when, api, client_id, caller_user_id)
            rest += [first + item + (request_id,) for item in items[whole:]]
    whole = len(rest) - len(rest) % _FLAT_ROWS
    for i in range(0, whole, _FLAT_ROWS):
        cursor.execute(_INSERT_FLAT, list(chain(rest[i : i + _FLAT_ROWS])))
    if whole < len(rest):
        cursor.executemany(_INSERT.format(mark="?"), rest[whole:])


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


def query(filters: Filters) -> Select:
    """The records matching `filters` (since inclusive, until exclusive), newest first."""
    stmt = select(DecisionRecord)
    column = DecisionRecord.__table__.c
    for name in ("user_id", "structure_id", "service", "space", "action", "client_id", "api"):
        value = getattr(filters, name)
        if value is not None:
            stmt = stmt.where(column[name] == value)
    if filters.allowed is not None:
        stmt = stmt.where(DecisionRecord.allowed.is_(filters.allowed))
    if filters.since is not None:
        stmt = stmt.where(DecisionRecord.decided_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(DecisionRecord.decided_at < filters.until)
    return stmt.order_by(DecisionRecord.decided_at.desc(), DecisionRecord.id.desc())


def list_records(session: Session, filters: Filters, *, page: int, page_size: int) -> Page:
    """One page of the records matching `filters`, newest first."""
    return paginate(session, query(filters), page=page, page_size=page_size)


def as_dict(record: DecisionRecord) -> dict[str, Any]:
    return {"id": record.id, **{name: getattr(record, name) for name in COLUMNS}}


def iter_records(session: Session, filters: Filters, chunk: int = 1000) -> Iterator[DecisionRecord]:
    """Every record matching `filters`, newest first, read in chunks."""
    yield from session.scalars(query(filters).execution_options(yield_per=chunk))


def to_csv(records: Iterable[DecisionRecord]) -> Iterator[str]:
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
    """Delete the records older than `retention_days`; how many. The caller commits."""
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    return rowcount(
        session.execute(
            delete(DecisionRecord).where(DecisionRecord.decided_at < cutoff),
            execution_options={"synchronize_session": False},
        )
    )


def recorded_pairs(questions: Sequence[Any], decisions: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
    """(question, decision) pairs of a request, skipping answers that are not
    decisions (an AuthZEN item that could not be read)."""
    for q, d in zip(questions, decisions, strict=False):
        if hasattr(d, "allowed"):
            yield q, d
