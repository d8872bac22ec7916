"""A single check through the WSGI application, without HTTP: the fast path
(api/fastcheck.py) against the Flask route it stands in for, in one process,
interleaved (docs/performance.md, "Checks below Flask").

    .venv/bin/python -m bench.wsgi_check [--reps 3] [--checks 5000]

The same bodies, with one client application's key, are given to the
middleware (what `authz serve` runs) and to the Flask application behind it
(what answers any request the middleware hands over), each as a WSGI call
with a ready environ: what is left of a request's cost besides gunicorn and
the socket. CPU time of the process per check, median and range of the
repetitions, with the load average. On a copy of the quick bench world
(SQLite).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.fastcheck import FastChecks
from authz.runtime import close_runtime
from authz.workflows import clients

from .app import bench_settings, migrated_app
from .run import question_mix
from .world import WorldSize, ensure_world


def environ(body: bytes, key: str) -> dict[str, Any]:
    return {
        "PATH_INFO": "/v1/checks",
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
    }


def timed(app: Callable[..., Any], bodies: list[bytes], key: str) -> float:
    """CPU seconds per check of `app` over `bodies`."""
    statuses: list[str] = []

    def start_response(status: str, _headers: Any) -> None:
        statuses.append(status)

    started = time.process_time()
    for body in bodies:
        b"".join(app(environ(body, key), start_response))
    spent = time.process_time() - started
    if any(not s.startswith("200") for s in statuses):
        raise SystemExit(f"not every check answered 200: {sorted(set(statuses))}")
    return spent / len(bodies)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--checks", type=int, default=5000)
    args = parser.parse_args(argv)
    world = ensure_world(WorldSize(2_000, 200, 20_000))  # the quick world of bench.run
    assert world.path is not None  # noqa: S101 - a SQLite world
    workdir = Path(tempfile.mkdtemp(prefix="bench-wsgi-"))
    try:
        shutil.copyfile(world.path, workdir / "authz.db")
        app = migrated_app(bench_settings(f"sqlite:///{workdir / 'authz.db'}", "wsgi"))
        rt = app.extensions["authz"]
        with rt.sessions() as session:
            _, key = clients.create_client(session, rt, "bench-wsgi")
        index = rt.decider.index
        questions = question_mix(
            rt, list(index.memberships), args.checks, 42, list(index.users), list(index.structures)
        )
        bodies = [
            json.dumps(
                {
                    "user_id": q.user_id,
                    "structure_id": q.structure_id,
                    "space": q.space,
                    "action": q.action,
                    "service": q.service,
                }
            ).encode()
            for q in questions
        ]
        middleware = app.wsgi_app
        assert isinstance(middleware, FastChecks)  # noqa: S101
        timed(middleware.flask, bodies[:100], key)  # the key resolved and cached
        fast, routed = [], []
        for _ in range(args.reps):
            fast.append(timed(middleware, bodies, key))
            routed.append(timed(middleware.flask, bodies, key))
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())

        def line(name: str, values: list[float]) -> str:
            return (
                f"{name:<12} {statistics.median(values) * 1e6:7.1f} µs of CPU per check "
                f"[{min(values) * 1e6:.1f} .. {max(values) * 1e6:.1f}]"
            )

        print(f"{args.checks:,} checks × {args.reps} repetitions, interleaved; load {load}")
        print(line("fast path", fast))
        print(line("Flask route", routed))
        print(f"fast / route: {statistics.median(fast) / statistics.median(routed):.2f}")
        print(f"answered by the fast path: {middleware.answered:,}; by Flask: {middleware.passed}")
        close_runtime(rt)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
