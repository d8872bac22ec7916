"""One instance's memory and start-up at a size, and a full reload under load
(docs/performance.md, "Memory and start-up"; docs/operations.md, "Sizing").

    .venv/bin/python -m bench.instance --grants 1000000
    .venv/bin/python -m bench.instance --grants 10000000 --workers 2

On a copy of a generated world (bench/world.py, in the benchmark's
proportions: a user per 10 grants, a structure per 100), `authz serve` with
its workers starts twice: **cold** (an empty index folder: the workers answer
at once, key by key from the database, while a child process builds the
snapshot, which they then map) and **warm** (the snapshot is there, as after a
restart or for a second instance on the machine). For each it prints the time
until /health/ready answers, until every worker serves from its index
(authz_index_from_database 0 on each) and until every worker is idle, and the
PSS of the master and of each worker
(/proc/<pid>/smaps_rollup: a page shared by n processes counts 1/n in each),
whose sum is what the instance costs the machine.

Then, with the warm instance answering checks from two connections at full
speed, a change that names no scope is committed (a full reload: every worker
makes a new index in the background and answers meanwhile, each question's
keys read from the database): the checks answered in the two seconds before,
until the new snapshot is written, and after, with their rate and worst
latency, and the longest time the instance went without answering. A stall
shows there. The load average is printed beside every figure.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from authz.config import load_settings
from authz.engine.decisions import Question
from authz.runtime import build_runtime, close_runtime
from authz.workflows import clients
from authz.workflows.records import bump_revision
from models import Attachment

from .run import Server, as_body, http_json, loadavg
from .world import WorldSize, ensure_world


def pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def from_database(port: int) -> list[float]:
    """authz_index_from_database of each live worker (GET /metrics)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("authz_index_from_database{")
    ]


def wait_indexed(server: Server, workers: int, timeout: float) -> float:
    """Seconds from the start until every worker serves from its index (none
    answers from the database key by key any more)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        states = from_database(server.port)
        if len(states) >= workers and not any(states):
            return time.perf_counter() - server.started
        time.sleep(0.2)
    return float("nan")


def start(url: str, workdir: Path, workers: int, name: str) -> tuple[Server, dict]:
    server = Server(url, workdir, workers=workers, name=name)
    ready = server.wait_ready(600)
    indexed = wait_indexed(server, workers, 900)
    server.wait_workers_idle(workers, 600)
    idle = time.perf_counter() - server.started
    pids = server.workers()
    pss = {"master": pss_mb(server.proc.pid), **{f"worker {p}": pss_mb(p) for p in pids}}
    return server, {
        "ready_s": ready,
        "indexed_s": indexed,
        "all_idle_s": idle,
        "pss": pss,
        "load": loadavg(),
    }


def report(label: str, r: dict) -> None:
    total = sum(r["pss"].values())
    parts = ", ".join(f"{k} {v:.0f}" for k, v in r["pss"].items())
    print(
        f"  {label:<5} ready {r['ready_s']:5.1f} s (answering; from the database key by key "
        f"until every worker has its index: {r['indexed_s']:5.1f} s), every worker idle "
        f"{r['all_idle_s']:5.1f} s; PSS {total:.0f} MB ({parts}); load {r['load']}"
    )


def hammer(port: int, key: str, body: dict, stop: threading.Event, out: list) -> None:
    """Checks one after the other on one connection: (start, seconds, status)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    payload = json.dumps(body)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    while not stop.is_set():
        t = time.perf_counter()
        conn.request("POST", "/v1/checks", payload, headers)
        resp = conn.getresponse()
        resp.read()
        out.append((t, time.perf_counter() - t, resp.status))
    conn.close()


def full_reload_under_load(url: str, port: int, workdir: Path) -> None:
    settings = load_settings(
        {"database_url": url, "mail_background": False, "var_dir": str(workdir / "cli")}
    )
    rt = build_runtime(settings)
    try:
        with rt.sessions() as session:
            _client, key = clients.create_client(session, rt, f"bench-instance-{os.getpid()}")
        with Session(rt.engine) as session:
            row = session.execute(
                select(Attachment.user_id, Attachment.structure_id).where(
                    Attachment.status == "validated", Attachment.service_id.is_(None)
                )
            ).first()
        if row is None:
            raise SystemExit("the world has no attachment to ask about")
        body = as_body(Question(row[0], row[1], "issued_invoices", "consult"))
        for _ in range(8):  # every worker knows the key (argon2 once each)
            http_json(port, "POST", "/v1/checks", body, key, 60)
        samples: list[tuple[float, float, int]] = []
        stop = threading.Event()
        threads = [
            threading.Thread(target=hammer, args=(port, key, body, stop, samples)) for _ in range(2)
        ]
        for t in threads:
            t.start()
        time.sleep(2)
        changed = time.perf_counter()
        with rt.sessions.begin() as session:
            revision = bump_revision(session)  # names nothing: every worker reloads everything
        load_at_change = loadavg()
        # Until the new snapshot is there (built by one worker, mapped by the
        # other), then a few seconds of the new index.
        index_dir = workdir / "var" / "index"
        built = float("nan")
        while time.perf_counter() - changed < 300:
            if any(index_dir.glob(f"index-*-{revision:012d}-*.snap")):
                built = time.perf_counter() - changed
                break
            time.sleep(0.1)
        time.sleep(5)
        stop.set()
        for t in threads:
            t.join()
    finally:
        close_runtime(rt)

    def window(lo: float, hi: float) -> str:
        got = [s for s in samples if lo <= s[0] < hi]
        if not got:
            return "none answered"
        worst = max(s[1] for s in got) * 1000
        med = statistics.median(s[1] for s in got) * 1000
        errors = sum(1 for s in got if s[2] != 200)
        rate = len(got) / (hi - lo)
        return f"{rate:,.0f} checks/s, median {med:.1f} ms, worst {worst:.0f} ms, {errors} not 200"

    end = max(s[0] for s in samples)
    ends = sorted(t + d for t, d, _ in samples if t + d >= changed)
    silent = max((b - a for a, b in itertools.pairwise(ends)), default=float("nan"))
    print(f"  full reload under load (2 connections; load {load_at_change} at the change):")
    print(f"    the new snapshot written {built:.1f} s after the change")
    print(f"    the 2 s before:        {window(changed - 2, changed)}")
    print(f"    until it is written:   {window(changed, changed + built)}")
    print(f"    after:                 {window(changed + built, end)}")
    print(f"    longest time without an answer after the change: {silent * 1000:.0f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grants", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL database named *bench*, emptied and filled for this run "
        "(default: a copy of the cached SQLite world)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    size = WorldSize(
        users=max(args.grants // 10, 100),
        structures=max(args.grants // 100, 10),
        grants=args.grants,
    )
    if args.database_url and "bench" not in args.database_url:
        raise SystemExit("--database-url must name a database whose name contains 'bench'")
    world = ensure_world(size, args.database_url, log=print, reset=bool(args.database_url))
    workdir = Path(tempfile.mkdtemp(prefix="bench-instance-"))
    try:
        if world.path is not None:
            copy = workdir / "world.db"
            shutil.copy(world.path, copy)
            url = f"sqlite:///{copy}"
        else:
            url = world.url
        # The world's policy revision names no change a snapshot could be
        # confirmed by: one scoped change, as any live database has.
        engine = create_engine(url)
        with Session(engine) as session, session.begin():
            if url.startswith("sqlite"):
                session.execute(text("PRAGMA journal_mode=WAL"))
            bump_revision(session, users=[1])
        engine.dispose()
        print(
            f"{args.grants:,} grants ({size.users:,} users, {size.structures:,} structures), "
            f"{args.workers} workers, {engine.dialect.name}"
        )
        for label in ("cold", "warm"):
            server, r = start(url, workdir, args.workers, label)
            try:
                report(label, r)
                if label == "warm":
                    full_reload_under_load(url, server.port, workdir)
            finally:
                server.stop()
        index_dir = workdir / "var" / "index"
        sizes = [p.stat().st_size for p in index_dir.glob("*.snap")]
        print(f"  snapshot files: {', '.join(f'{s / 1e6:.0f} MB' for s in sizes)}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
