"""Prometheus metrics of the service (docs/operations.md, "Metrics").

Every metric is declared here, once, and recorded by the code that knows the
fact (the decision functions, the index, the mail sender, the log-in throttle,
the HTTP layer). `render()` writes them in the Prometheus text format.

Under `authz serve` each gunicorn worker is a process of its own: the master
sets PROMETHEUS_MULTIPROC_DIR to a fresh folder before forking (cli/serve.py),
every worker writes its values there (prometheus-client's multiprocess mode)
and a scrape answered by any worker adds up the files of all of them. A worker
that exits is marked dead by the master (its live gauges disappear; its
counters keep counting in the sum). Without that variable (tests, the CLI)
the values live in this process only.

prometheus_client is imported on first use, never when this module is: the
value class it stores numbers in is chosen when it is imported, from
PROMETHEUS_MULTIPROC_DIR, and `authz serve` only sets that variable once the
CLI is running.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import tracing

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Decisions take microseconds to milliseconds; a whole HTTP request up to seconds.
DECISION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RELOAD_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

# Label sets of the HTTP metrics whose children are kept bound.
HTTP_BOUND_MAX = 1000

# The APIs a decision is asked through (label `api`).
DECISION_APIS = ("check", "batch", "permissions", "access", "authzen")
# What a decision came to (label `result`): an error is a decision refused
# (the database unreadable, a revision not reached) or an engine error (a deny).
RESULTS = ("allowed", "denied", "error")


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


# The hot path's counts (decisions, HTTP requests and their times) are added
# to plain numbers here and written to prometheus-client's values at most
# FLUSH_SECONDS later by a thread of the process, and before this process
# renders a scrape: prometheus-client's own updates (a lock and, under
# `authz serve`, a write to its memory-mapped file per value; three or four
# values a request) cost 8 to 17 µs a check, more than the decision. What a
# worker killed outright had not yet written is lost with it.
FLUSH_SECONDS = 1.0


class Pending:
    """Counter increments and histogram observations not yet written."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Any, float] = {}
        # histogram child -> [count per bucket..., sum]
        self._observed: dict[Any, list[float]] = {}
        self._bounds: dict[Any, list[float]] = {}
        self._flusher: threading.Thread | None = None

    def inc(self, child: Any, amount: float = 1) -> None:
        with self._lock:
            self._counts[child] = self._counts.get(child, 0) + amount
        if self._flusher is None:
            self._start()

    def observe(self, timed: Any, value: float) -> None:
        self.record(None, 0, timed, value)

    def record(self, child: Any, amount: float, timed: Any, value: float) -> None:
        """inc(child, amount) (none for None) and observe(timed, value), under
        one lock."""
        bounds = self._bounds.get(timed)
        if bounds is None:
            bounds = self._bounds[timed] = list(timed._upper_bounds)  # noqa: SLF001 - see flush
        slot = bisect.bisect_left(bounds, value)  # the first bucket whose bound is >= value
        with self._lock:
            if child is not None:
                self._counts[child] = self._counts.get(child, 0) + amount
            found = self._observed.get(timed)
            if found is None:
                found = self._observed[timed] = [0.0] * (len(bounds) + 1)
            found[slot] += 1
            found[-1] += value
        if self._flusher is None:
            self._start()

    def flush(self) -> None:
        """Write what is pending to prometheus-client's values. A histogram's
        buckets and sum are written as observe() writes them (its `_buckets`
        and `_sum` values: prometheus-client is pinned, and
        tests/test_metrics.py compares both ways)."""
        with self._lock:
            counts, self._counts = self._counts, {}
            observed, self._observed = self._observed, {}
        for child, amount in counts.items():
            child.inc(amount)
        for child, slots in observed.items():
            for i, n in enumerate(slots[:-1]):
                if n:
                    child._buckets[i].inc(n)  # noqa: SLF001 - see the docstring
            child._sum.inc(slots[-1])  # noqa: SLF001

    def _start(self) -> None:
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(
                target=self._run, name="authz-metrics-flush", daemon=True
            )
            self._flusher.start()

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:  # metrics never stop the service
                logging.getLogger("authz.metrics").exception("writing the metrics failed")

    def after_fork(self) -> None:
        """In a forked child: the parent's flusher thread did not come along,
        and what the parent had pending is the parent's to write."""
        self._lock = threading.Lock()
        self._counts, self._observed = {}, {}
        self._flusher = None


PENDING = Pending()
os.register_at_fork(after_in_child=PENDING.after_fork)
atexit.register(PENDING.flush)


def flush() -> None:
    """Write this process's pending counts now (a scrape, a test, an exit)."""
    PENDING.flush()


class Metrics:
    """The service's metrics (one instance per process, see `get`)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram  # noqa: PLC0415  (lazy: see the module docstring)

        self.decisions = Counter(
            "authz_decisions",
            "Decisions taken, by the API asked and the result.",
            ["api", "result"],
        )
        self.decision_seconds = Histogram(
            "authz_decision_seconds",
            "Time to answer one decision request (a batch counts once), by API.",
            ["api"],
            buckets=DECISION_BUCKETS,
        )
        self.http_requests = Counter(
            "authz_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
        )
        self.http_seconds = Histogram(
            "authz_http_request_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
        )
        # One series per live worker (label `pid` added in multiprocess mode).
        self.revision = Gauge(
            "authz_policy_revision",
            "The policy revision this worker's decision index is at.",
            multiprocess_mode="liveall",
        )
        self.index_entries = Gauge(
            "authz_index_entries",
            "Entries of this worker's decision index, by kind.",
            ["kind"],
            multiprocess_mode="liveall",
        )
        self.index_from_database = Gauge(
            "authz_index_from_database",
            "1 while this worker answers each question from the database, key by "
            "key (its first start on a machine, or a full reload), until its new "
            "index is swapped in; else 0.",
            multiprocess_mode="liveall",
        )
        self.index_reloads = Counter(
            "authz_index_reloads",
            "Decision index updates: full (every fact read) or incremental.",
            ["kind"],
        )
        self.index_reload_seconds = Histogram(
            "authz_index_reload_seconds",
            "Time to update the decision index, by kind.",
            ["kind"],
            buckets=RELOAD_BUCKETS,
        )
        self.mail_failures = Counter(
            "authz_mail_delivery_failures",
            "Attempts to deliver an outbox mail that failed (it is retried).",
        )
        self.mails_sent = Counter("authz_mail_delivered", "Outbox mails delivered.")
        self.login_failures = Counter(
            "authz_login_failures",
            "Log-ins refused: a wrong secret, or an attempt while locked out.",
            ["reason"],
        )
        self.lockouts = Counter(
            "authz_login_lockouts",
            "Lock-outs started (a login or a client address reached its limit).",
        )
        self.pool_checked_out = Gauge(
            "authz_db_pool_checked_out",
            "Database connections in use, summed over the live workers.",
            multiprocess_mode="livesum",
        )
        self.pool_size = Gauge(
            "authz_db_pool_size",
            "Database connections the pools keep, summed over the live workers.",
            multiprocess_mode="livesum",
        )
        self.decision_log_dropped = Counter(
            "authz_decision_log_dropped",
            "Decision log records dropped (the buffer was full, or a write failed).",
        )
        self.decision_log_written = Counter(
            "authz_decision_log_written", "Decision log records written."
        )
        # Children bound once: the hot path does a dictionary look-up, no label parsing.
        self._decisions = {
            (api, result): self.decisions.labels(api, result)
            for api in DECISION_APIS
            for result in RESULTS
        }
        self._decision_seconds = {api: self.decision_seconds.labels(api) for api in DECISION_APIS}
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def http_answered(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request answered (its children bound once per label set:
        prometheus-client's labels() validates and locks on every call)."""
        key = (method, route, status)
        bound = self._http.get(key)
        if bound is None:
            bound = (
                self.http_requests.labels(method, route, str(status)),
                self.http_seconds.labels(method, route),
            )
            if len(self._http) < HTTP_BOUND_MAX:  # the method is the client's word
                self._http[key] = bound
        PENDING.record(bound[0], 1, bound[1], seconds)

    def decided(self, api: str, allowed: int, denied: int, errors: int, seconds: float) -> None:
        """One decision request through `api`: how many of each result, and its time."""
        timed = self._decision_seconds[api]
        if allowed and not (denied or errors):  # one kind of result: one update
            PENDING.record(self._decisions[api, "allowed"], allowed, timed, seconds)
            return
        if denied and not (allowed or errors):
            PENDING.record(self._decisions[api, "denied"], denied, timed, seconds)
            return
        if allowed:
            PENDING.inc(self._decisions[api, "allowed"], allowed)
        if denied:
            PENDING.inc(self._decisions[api, "denied"], denied)
        if errors:
            PENDING.inc(self._decisions[api, "error"], errors)
        PENDING.observe(timed, seconds)


@functools.cache
def get() -> Metrics:
    """This process's metrics, declared on first use."""
    return Metrics()


class DecisionTimer:
    """Times a decision request (`with DecisionTimer(api) as count:`): the body
    calls `count(allowed, denied, errors)` once. A request that raises counts
    one error when no decision could be taken (Unavailable, or anything
    unexpected), one denial when the caller was refused (Forbidden, NotFound,
    Invalid). A class, not a generator: it runs on every check."""

    __slots__ = ("api", "counted", "span", "started")

    def __init__(self, api: str) -> None:
        self.api = api
        self.counted = False
        self.started = 0.0
        self.span: Any = None

    def __enter__(self) -> DecisionTimer:
        if tracing.TRACER is not None:
            self.span = tracing.Active(f"authz.decide {self.api}", **{"authz.api": self.api})
        self.started = time.perf_counter()
        return self

    def __call__(self, allowed: int, denied: int, errors: int) -> None:
        self.counted = True
        get().decided(self.api, allowed, denied, errors, time.perf_counter() - self.started)
        if self.span is not None:
            self.span.set(
                **{"authz.allowed": allowed, "authz.denied": denied, "authz.errors": errors}
            )

    def __exit__(self, kind: Any, exc: BaseException | None, _tb: Any) -> None:
        if self.span is not None:
            self.span.end(exc)
        if exc is None or self.counted:
            return
        from .errors import DomainError, Unavailable  # noqa: PLC0415  (errors is light; kept off the import of this module)

        refused = isinstance(exc, DomainError) and not isinstance(exc, Unavailable)
        self(0, int(refused), int(not refused))


def index_from_database(answering: bool) -> None:
    """The decider answers key by key from the database (True), or from its index."""
    get().index_from_database.set(int(answering))


def index_loaded(kind: str, seconds: float, sizes: dict[str, int], revision: int) -> None:
    """The decision index was updated (`kind` full or incremental) to `revision`."""
    m = get()
    m.index_reloads.labels(kind).inc()
    m.index_reload_seconds.labels(kind).observe(seconds)
    for name, size in sizes.items():
        m.index_entries.labels(name).set(size)
    m.revision.set(revision)


def watch_pool(engine: Any) -> None:
    """Count the connections `engine`'s pool hands out and keeps."""
    from sqlalchemy import event  # noqa: PLC0415  (lazy: see the module docstring)

    m = get()
    size = getattr(engine.pool, "size", None)
    if callable(size):
        m.pool_size.inc(size())

    @event.listens_for(engine, "checkout")
    def _out(*_args: Any) -> None:
        m.pool_checked_out.inc()

    @event.listens_for(engine, "checkin")
    def _in(*_args: Any) -> None:
        m.pool_checked_out.dec()


@dataclass(frozen=True)
class DatabaseFacts:
    """What a scrape reads from the database (shared by every worker)."""

    revision: int
    outbox_pending: int
    outbox_oldest_seconds: float


def render(read_database: Callable[[], DatabaseFacts] | None = None) -> tuple[bytes, str]:
    """(body, content type) of a scrape: every worker's metrics (or this
    process's), plus what `read_database` reads at scrape time: the latest
    revision (and each worker's lag behind it) and the mail outbox. A database
    that cannot be read gives `authz_scrape_database_up 0`, not an error."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest  # noqa: PLC0415  (lazy: see the module docstring)
    from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415  (lazy: see the module docstring)
    from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415  (lazy: see the module docstring)

    get()  # every family is declared, even before its first value
    flush()  # this process's own counts; the other workers' are at most a second old
    source: Any = REGISTRY
    if multiprocess_dir():
        source = CollectorRegistry()
        MultiProcessCollector(source)
    families = list(source.collect())
    if read_database is not None:
        up = GaugeMetricFamily(
            "authz_scrape_database_up", "1 when this scrape could read the database."
        )
        try:
            facts = read_database()
        except Exception:  # noqa: BLE001  (a scrape reports the database down, never fails)
            up.add_metric([], 0)
            families.append(up)
        else:
            up.add_metric([], 1)
            families.extend([up, *_database_families(facts, families)])
    return generate_latest(_Collected(families)), CONTENT_TYPE_LATEST


def _database_families(facts: DatabaseFacts, families: list[Any]) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415  (lazy: see the module docstring)

    latest = GaugeMetricFamily(
        "authz_policy_revision_database", "The latest policy revision committed."
    )
    latest.add_metric([], facts.revision)
    yield latest
    lag = GaugeMetricFamily(
        "authz_policy_revision_lag",
        "Revisions a worker's decision index is behind the database (it catches up "
        "on its next decision).",
        labels=["pid"],
    )
    for family in families:
        if family.name == "authz_policy_revision":
            for sample in family.samples:
                pid = sample.labels.get("pid", str(os.getpid()))
                lag.add_metric([pid], max(0.0, facts.revision - sample.value))
    yield lag
    pending = GaugeMetricFamily("authz_mail_outbox_pending", "Mails waiting in the outbox.")
    pending.add_metric([], facts.outbox_pending)
    yield pending
    oldest = GaugeMetricFamily(
        "authz_mail_outbox_oldest_age_seconds",
        "Age of the oldest mail waiting in the outbox (0: none waits).",
    )
    oldest.add_metric([], facts.outbox_oldest_seconds)
    yield oldest


class _Collected:
    """Families already collected, in the shape generate_latest reads."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


def mark_dead(pid: int, directory: str) -> None:
    """A worker exited: its live gauges no longer count (gunicorn's child_exit)."""
    from prometheus_client.multiprocess import mark_process_dead  # noqa: PLC0415  (lazy: see the module docstring)

    # Gone already: it lists the worker's files, then removes them, and at
    # shutdown gunicorn may report one worker's exit twice (seen in CI: the
    # second report's error was a plain-text line among the JSON logs).
    with contextlib.suppress(FileNotFoundError):
        mark_process_dead(pid, directory)
