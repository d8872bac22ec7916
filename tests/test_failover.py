"""PostgreSQL restarts and fail-overs (issue 11, item 5), against a real
`authz serve` with two workers.

A restart ends every connection: here every backend of the test database is
terminated (pg_terminate_backend), which is what the service sees of a restart
or a fail-over; the shared server itself cannot be stopped. For the time the
database is *down*, the service reaches PostgreSQL through a TCP relay of this
test, which then refuses new connections and cuts the open ones.

The rule: requests fail only while the database is down (a decision is a 503,
never an allow; readiness is a 503), and the very next request of every worker
after it is back succeeds.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from authz import db
from authz.config import SettingError, load_settings
from authz.runtime import build_runtime, close_runtime
from authz.workflows.clients import create_client
from tests.support.backend import FAST_HASH, POSTGRES_URL
from tests.support.live import Server, free_port, postgres_schema, serve_env, serving

# An unknown user: the answer is a deny (200), taken after the same freshness
# check against the database as any other.
QUESTION = {"user_id": 424242, "structure_id": 1, "space": "issued_invoices", "action": "consult"}
PHASE_MAX = 120  # requests sent at most for both workers to answer in one phase


class Relay:
    """A TCP relay to PostgreSQL. down(): connections refused, open ones cut
    (the database is gone); up(): accepting again (it is back)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress
            listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: down()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def relayed(url: str) -> Iterator[tuple[Relay, str]]:
    """A relay to the database of `url`, up, and the URL that goes through it."""
    parsed = make_url(url)
    relay = Relay(parsed.host or "127.0.0.1", parsed.port or 5432)
    relay.up()
    try:
        yield relay, parsed.set(host="127.0.0.1", port=relay.port).render_as_string(False)
    finally:
        relay.down()


def terminate_every_backend(url: str) -> int:
    """End every other connection to the test database, as a restart does, and
    wait until they are gone (pg_terminate_backend only signals them: a backend
    still finishing would look alive to a ping a moment longer)."""
    admin = create_engine(url)
    try:
        with admin.connect() as conn:
            ended = [
                pid
                for pid, _ in conn.execute(
                    text(
                        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            ]
            conn.commit()  # pg_stat_activity is read once per transaction
            deadline = time.monotonic() + 10
            while conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                {"pids": list(ended)},
            ).scalar():
                conn.commit()
                assert time.monotonic() < deadline, "terminated backends still there"
                time.sleep(0.05)
            return len(ended)
    finally:
        admin.dispose()


def phase(server: Server, key: str) -> list[tuple[int, int]]:
    """Checks, four at a time, until every worker has answered at least two of
    them (or PHASE_MAX were sent): (worker pid, status) of each, in log order."""
    already = len(server.served())
    workers = server.workers()

    refusals: list = []

    def ask(_: int) -> int:
        status, answer = server.call("POST", "/v1/checks", QUESTION, key)
        if status != 200:
            refusals.append(answer)
        return status

    answered: list = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(PHASE_MAX // 8):
            list(pool.map(ask, range(8)))
            # The checks only: a request of wait_every_worker (GET /v1/me, a 401)
            # may be logged just after `already` was counted.
            answered = [
                (pid, status)
                for pid, status, _method, path in server.served()[already:]
                if path == "/v1/checks"
            ]
            if all(sum(1 for pid, _ in answered if pid == w) >= 2 for w in workers):
                assert not refusals, (refusals, answered)
                return answered
    pytest.fail(f"not every worker answered: {answered}")


@pytest.mark.parametrize("seconds, recycle", [("1800", 1800), ("60", 60), ("0", -1)])
def test_postgresql_connections_are_checked_before_use_and_recycled(seconds, recycle):
    settings = load_settings(
        environ={
            "AUTHZ_DATABASE_URL": "postgresql+psycopg://authz@db.invalid/authz",
            "AUTHZ_DATABASE_RECYCLE_SECONDS": seconds,
        }
    )
    engine = db.make_engine(settings)  # connects to nothing yet
    # The pool keeps both settings private: no public attribute reads them back.
    pool = engine.pool
    assert (pool._pre_ping, pool._recycle) == (True, recycle)  # noqa: SLF001


def test_a_negative_recycle_age_is_refused():
    with pytest.raises(
        SettingError, match="AUTHZ_DATABASE_RECYCLE_SECONDS: expected an integer >= 0"
    ):
        load_settings(environ={"AUTHZ_DATABASE_RECYCLE_SECONDS": "-5"})


@pytest.mark.skipif(not POSTGRES_URL, reason="AUTHZ_TEST_POSTGRES_URL is not set")
def test_a_restart_fails_no_request_and_while_down_decisions_and_readiness_are_503(
    tmp_path: Path,
):
    with postgres_schema() as url, relayed(url) as (relay, via_relay):
        settings = load_settings({"database_url": url, "var_dir": str(tmp_path), **FAST_HASH})
        rt = build_runtime(settings)
        try:
            db.upgrade(rt.engine)
            with rt.sessions() as session:
                _, key = create_client(session, rt, "failover")
        finally:
            close_runtime(rt)
        # One thread per worker: a busy worker leaves the next connection to the
        # other, so that both answer in every phase.
        env = serve_env(via_relay, tmp_path / "var", threads="1")
        with serving(env, tmp_path / "serve.log", every_worker=True) as server:
            assert {status for _, status in phase(server, key)} == {200}

            # A restart: every connection of every worker dies at once.
            assert terminate_every_backend(url) > 0
            after_restart = phase(server, key)
            assert {status for _, status in after_restart} == {200}, after_restart
            assert server.call("GET", "/health/ready")[0] == 200

            # Down: refused, never allowed; not ready.
            relay.down()
            for _ in range(8):
                status, answer = server.call("POST", "/v1/checks", QUESTION, key)
                assert status == 503, answer
                assert answer["code"] in ("database_unavailable", "policy_store_unavailable")
            status, answer = server.call("GET", "/health/ready")
            assert (status, answer["code"]) == (503, "database_unavailable")

            # Back: the next request of every worker succeeds.
            relay.up()
            after_outage = phase(server, key)
            assert {status for _, status in after_outage} == {200}, after_outage
            assert server.call("GET", "/health/ready")[0] == 200
