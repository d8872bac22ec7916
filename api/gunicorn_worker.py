"""gunicorn's threaded worker, answering its own refusals as problems.

gunicorn refuses some requests before the application sees them: a request
line longer than `limit_request_line` (414), too many or too large header
fields (431), a request that is not HTTP (400)… and writes those answers
itself, as text/html. This worker lets gunicorn decide, log and count them as
it always does (Worker.handle_error), catches the answer it writes, and sends
the same status as an application/problem+json body with a stable `code`, like
every other error of the service (api/errors.py).

It also shares new connections fairly between the workers of an instance
(`Loads`): a worker that holds more open connections than the least loaded
other worker plus one stops accepting, for ACCEPT_PAUSE_SECONDS at most, so a
burst of keep-alive connections (a client's pool opening at once) is spread
instead of piling onto whichever worker woke first, while clients that open
a connection per request, spread evenly already, are never held back
(docs/performance.md, "Both workers").

`authz serve` runs it (`worker_class`); it is a worker class, gunicorn's
supported way to change how a worker handles connections.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import re
import time
from typing import Any

from gunicorn.util import write_nonblock
from gunicorn.workers.gthread import ThreadWorker

from .errors import HTTP_CODES, PROBLEM_TYPE

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ([^\r\n]*)")

DETAILS = {
    400: "The request is not valid HTTP.",
    414: "The request line (method, path and query string) is longer than this service accepts.",
    431: "The request has too many header fields, or one that is too large.",
}


class _Captured:
    """The client socket, except that what is sent to it is kept instead."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def problem_answer(status: int, reason: str) -> bytes:
    """A complete HTTP answer: `status` as a problem, closing the connection."""
    code = HTTP_CODES.get(status, "http_error")
    body = json.dumps(
        {
            "type": f"urn:authz:problem:{code}",
            "title": reason,
            "status": status,
            "code": code,
            "detail": DETAILS.get(status, reason),
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        f"Content-Type: {PROBLEM_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


# At most this long a worker refrains from accepting while it holds more
# connections than another: a worker stuck elsewhere cannot hold the rest back.
ACCEPT_PAUSE_SECONDS = 0.005
LOAD_SLOTS = 64


class Loads:
    """Open connections per worker, in memory the master maps before it forks
    its workers (so they all see it): -1 for a slot no worker holds. The
    master assigns a worker its slot before forking it (gunicorn's pre_fork)
    and frees it when the worker has exited (child_exit); the worker writes
    its own count."""

    def __init__(self, slots: int = LOAD_SLOTS) -> None:
        self.counts = multiprocessing.RawArray(ctypes.c_int, [-1] * slots)

    def assign(self, worker: Any) -> None:
        """In the master, before `worker` is forked: its slot, if one is free."""
        for slot, count in enumerate(self.counts):
            if count < 0:
                self.counts[slot] = 0
                worker.load_slot = slot
                return

    def release(self, worker: Any) -> None:
        """In the master, once `worker` has exited."""
        slot = getattr(worker, "load_slot", None)
        if slot is not None:
            self.counts[slot] = -1

    def least_other(self, slot: int) -> int | None:
        """The fewest connections another live worker holds (None: no other)."""
        others = [c for i, c in enumerate(self.counts[:]) if i != slot and c >= 0]
        return min(others) if others else None


LOADS = Loads()


class ProblemThreadWorker(ThreadWorker):
    """gunicorn's threaded worker, with its refusals answered as problems and
    new connections shared with the other workers (see the module docstring)."""

    load_slot: int | None = None
    _paused_until = 0.0

    def _crowded(self) -> bool:
        """Whether this worker holds more connections than another plus one
        (its own count published first)."""
        slot = self.load_slot
        if slot is None:
            return False  # not under `authz serve`'s master: gunicorn's behaviour
        LOADS.counts[slot] = self.nr_conns
        least = LOADS.least_other(slot)
        return least is not None and self.nr_conns > least + 1

    def accept(self, listener: Any) -> None:
        super().accept(listener)
        if self._crowded():
            self._paused_until = time.monotonic() + ACCEPT_PAUSE_SECONDS
            self.set_accept_enabled(False)

    def set_accept_enabled(self, enabled: bool | None) -> None:
        if enabled and time.monotonic() < self._paused_until and self._crowded():
            return  # paused: another worker has room for the next connection
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout: float | None) -> None:
        if self.load_slot is not None:
            LOADS.counts[self.load_slot] = self.nr_conns
        paused = self._paused_until - time.monotonic()
        if paused > 0:  # back to the loop in time to take up accepting again
            timeout = min(paused, 0.001) if timeout is None else min(timeout, paused, 0.001)
        super().wait_for_and_dispatch_events(timeout)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        captured = _Captured(client)
        # A stand-in for the socket, that keeps what gunicorn writes to it.
        super().handle_error(req, captured, addr, exc)  # type: ignore[arg-type]
        status = STATUS_LINE.match(captured.sent)
        answer = captured.sent
        if status is not None:
            answer = problem_answer(int(status[1]), status[2].decode("latin-1"))
        try:
            write_nonblock(client, answer)
        except Exception:  # noqa: BLE001 - the client may be gone: as gunicorn does, let it be
            self.log.debug("Failed to send error message.")
