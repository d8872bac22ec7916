"""gunicorn's threaded worker, answering its own refusals as problems.

gunicorn refuses some requests before the application sees them: a request
line longer than `limit_request_line` (414), too many or too large header
fields (431), a request that is not HTTP (400)… and writes those answers
itself, as text/html. This worker lets gunicorn decide, log and count them as
it always does (Worker.handle_error), catches the answer it writes, and sends
the same status as an application/problem+json body with a stable `code`, like
every other error of the service (api/errors.py).

`authz serve` runs it (`worker_class`); it is a worker class, gunicorn's
supported way to change how a worker handles connections.
"""

from __future__ import annotations

import json
import re
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


class ProblemThreadWorker(ThreadWorker):
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
