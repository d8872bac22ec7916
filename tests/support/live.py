"""Real `authz serve` processes for the tests that need several workers or
several instances (failover, policy versions across instances): started on a
port of this suite's range, called over HTTP, stopped with their workers."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url

from tests.support.backend import FAST_HASH, POSTGRES_URL, TEST_LEASE_MS

# This suite's range of ports for these servers; AUTHZ_TEST_PORTS=FIRST-LAST
# gives another (e.g. to run two checkouts' suites side by side).
_FIRST, _, _LAST = os.environ.get("AUTHZ_TEST_PORTS", "18400-18499").partition("-")
PORTS = range(int(_FIRST), int(_LAST) + 1)
READY_TIMEOUT = 60.0
HTTP_TIMEOUT = 10.0
# Access log lines: the worker's pid, the status, the method and the path.
ACCESS_LOG = "access %(p)s %(s)s %(m)s %(U)s"
_ACCESS_LINE = re.compile(r"^access <(\d+)> (\d{3}) (\S+) (\S+)$", re.MULTILINE)


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL schema of its own in the test
    database (skips without AUTHZ_TEST_POSTGRES_URL); dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip("AUTHZ_TEST_POSTGRES_URL is not set")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    # Checked before use: a test may end every connection to the database.
    admin = create_engine(POSTGRES_URL, pool_pre_ping=True)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def serve_env(database_url: str, var_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a real `authz` process: this one's, less its AUTHZ_*
    and gunicorn variables, plus cheap hashing, no mail thread, and an access
    log naming the worker that answered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHZ_", "GUNICORN_"))}
    env.update(
        {
            "AUTHZ_DATABASE_URL": database_url,
            "AUTHZ_VAR_DIR": str(var_dir),
            "AUTHZ_MAIL_BACKGROUND": "false",
            "AUTHZ_REVISION_LEASE_MS": str(TEST_LEASE_MS),
            "PYTHONUNBUFFERED": "1",
            "GUNICORN_CMD_ARGS": f"--access-logformat '{ACCESS_LOG}'",
            **{f"AUTHZ_{name.upper()}": str(value) for name, value in FAST_HASH.items()},
            **{f"AUTHZ_{name.upper()}": value for name, value in settings.items()},
        }
    )
    return env


def authz_command() -> str:
    return str(Path(sys.executable).with_name("authz"))


@dataclass
class Server:
    """A running `authz serve` and the way to call it."""

    port: int
    process: subprocess.Popen
    log: Path

    def call(
        self, method: str, path: str, body: Any = None, key: str | None = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON body), on a new connection each time so that
        requests spread over the workers."""
        status, _content_type, answer = self.exchange(method, path, body, key)
        return status, answer

    def exchange(
        self, method: str, path: str, body: Any = None, key: str | None = None
    ) -> tuple[int, str, Any]:
        """(status, content type, decoded JSON body), on a new connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        try:
            headers = {"Connection": "close", "Content-Type": "application/json"}
            if key:
                headers["Authorization"] = f"Bearer {key}"
            data = None if body is None else json.dumps(body)
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            return (
                response.status,
                response.getheader("Content-Type", ""),
                json.loads(payload) if payload else None,
            )
        finally:
            conn.close()

    def ok(
        self, method: str, path: str, body: Any = None, key: str | None = None, status: int = 200
    ) -> Any:
        """The JSON answer, asserting its status."""
        got, answer = self.call(method, path, body, key)
        assert got == status, (method, path, got, answer)
        return answer

    def fetch(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        """GET `path`: (status, body as text), on a new connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        try:
            conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8")
        finally:
            conn.close()

    def served(self) -> list[tuple[int, int, str, str]]:
        """(worker pid, status, method, path) of every request logged so far."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return [(int(p), int(s), m, u) for p, s, m, u in _ACCESS_LINE.findall(text)]

    def workers(self) -> set[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(pid) for pid in children.read_text().split()}

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited:\n{self.log.read_text()}"
            try:
                if self.call("GET", "/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"server not ready after {READY_TIMEOUT}s:\n{self.log.read_text()}")

    def wait_every_worker(self) -> None:
        """Until every worker has answered a request (a worker answers once it
        has loaded the app). /health/ready answers when one worker is up; a
        test that needs both would otherwise send all its requests, fast ones,
        to the first while the second is still loading (seen in CI: 120 checks
        in 0.6 s to one worker). Unauthenticated GET /v1/me: a 401, logged."""
        deadline = time.monotonic() + READY_TIMEOUT
        mark = len(self.served())
        while time.monotonic() < deadline:
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(lambda _: self.fetch("/v1/me"), range(8)))
            answered = {pid for pid, *_ in self.served()[mark:]}
            if not answered:
                return  # access lines in another format (JSON logs): cannot tell
            if answered >= self.workers():
                return
            time.sleep(0.05)
        pytest.fail(f"not every worker answered within {READY_TIMEOUT}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """Stop gunicorn and its workers (the whole process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


@contextmanager
def serving(
    env: Mapping[str, str], log: Path, workers: int = 2, *, every_worker: bool = False
) -> Iterator[Server]:
    """`authz serve --workers N` on a free port of the range, ready: one worker
    answering, or with `every_worker` each of them (Server.wait_every_worker;
    it sends unauthenticated requests, which tests counting lines must not get)."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [authz_command(), "serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(port=port, process=process, log=log)
    try:
        server.wait_ready()
        if every_worker:
            server.wait_every_worker()
        yield server
    finally:
        server.stop()
