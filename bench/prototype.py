"""Prototypes of optimisations of authz/decisions.py, measured against the
service's code in the same process. Nothing here is used by the service: each
prototype is a copy to measure, and checks it answers exactly as the original.

    .venv/bin/python -m bench.prototype decide    [--size full]
    .venv/bin/python -m bench.prototype memory    [--size full]   (fresh subprocesses)
    .venv/bin/python -m bench.prototype freshness [--size full]
    .venv/bin/python -m bench.prototype http      [--size full]
    .venv/bin/python -m bench.prototype gc        [--size full]
    .venv/bin/python -m bench.prototype serve     [--size small]  (gunicorn variants, wrk)

See docs/performance.md for the results and what each prototype changes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import io
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from authz.config import load_settings
from authz.decisions import (ROLE_RANK, AttachmentEntry, Decider, Decision, Gathered, Index,
                             StructureEntry, deny_reason, utc_today)
from authz.policy import LEVEL_NONE, SPACE_ACTIONS, SpaceFacts, SubjectFacts
from authz.runtime import Runtime, build_runtime, close_runtime

from .run import SIZES, Timing, median_timing, question_mix, rss_mb, time_calls
from .world import CACHE_DIR, WorldSize, ensure_world

log = logging.getLogger("bench.prototype")


# --- 1. the hot path of decide() ------------------------------------------------

class FastDecider(Decider):
    """Decider.decide() with the same answers (allowed, revision, rule, reason)
    and a cheaper hot path. It shares the original's index; what changes:

    - the space is found in a dict, not by a generator over the catalogue;
    - the memo key is a flat tuple of the fact values (hashed and compared in C),
      not a (SubjectFacts, SpaceFacts, action) key whose dataclass __hash__ and
      __eq__ run in Python; the facts objects are only built on a memo miss;
    - the memo keeps the deny reason with the engine's answer (deny_reason()
      depends on the facts and the action only);
    - a denial's Decision depends on (reason, revision) only, and a management
      Decision on (role, action, structure status, revision) only: both are
      immutable, so they are built once per revision and shared;
    - the attachment loop compares dates inline (no in_force() call, no
      Gathered object).
    """

    def __init__(self, base: Decider) -> None:  # noqa: D107 (shares base's state)
        self.__dict__.update(base.__dict__)
        self._spaces = {s.code: s for s in self.policy.policies.spaces}
        self._fast_memo: dict[tuple, tuple[bool, list[str], str | None]] = {}
        self._shared: dict[object, Decision] = {}
        self._shared_revision = -1

    def decide(self, q, *, today=None, explain=False):  # noqa: ANN001, ANN201
        if explain:
            return super().decide(q, today=today, explain=True)
        today = today or utc_today()
        try:
            if self._shared_revision != self.revision:
                self._shared.clear()
                self._shared_revision = self.revision
            if q.space is None:
                return self._management_fast(q, today)
            return self._space_fast(q, today)
        except Exception:
            log.exception("decision error: deny")
            return Decision(False, self.revision, reason="internal error: denied")

    def _denied(self, reason: str) -> Decision:
        found = self._shared.get(reason)
        if found is None:
            found = self._shared[reason] = Decision(False, self.revision, reason=reason)
        return found

    def _space_fast(self, q, today: dt.date) -> Decision:  # noqa: ANN001
        if q.action not in SPACE_ACTIONS:
            return self._denied("unknown action")
        index = self.index
        status = index.users.get(q.user_id)
        if status is None:
            return self._denied("unknown subject")
        structure = index.structures.get(q.structure_id)
        if structure is None:
            return self._denied("unknown structure")
        space = self._spaces.get(q.space or "")
        if space is None:
            return self._denied("unknown space")
        service_id = None
        service_status = "none"
        if q.service is not None:
            found = structure.services.get(q.service)
            if found is None:
                return self._denied("unknown service")
            service_id, active = found
            service_status = "active" if active else "inactive"
        membership = index.memberships.get((q.user_id, q.structure_id))
        whole = on_service = False
        role = None
        attachment_id = None
        best = 0
        subs = None
        if membership is not None:
            for att in membership.attachments:
                if att.valid_from > today or (att.valid_until is not None
                                              and today > att.valid_until):
                    continue
                if att.service_id is None:
                    whole = True
                elif att.service_id == service_id:
                    on_service = True
                else:
                    continue
                rank = ROLE_RANK[att.role]
                if rank > best:
                    best, role, attachment_id = rank, att.role, att.id
            subs = membership.subscriptions
        code = space.code
        all_sub = subs.get((code, None)) if subs else None
        svc_sub = subs.get((code, service_id)) if subs and service_id is not None else None
        all_level = all_sub[1] if all_sub else LEVEL_NONE
        service_level = svc_sub[1] if svc_sub else LEVEL_NONE
        role_level = space.granted_by_default.get(role, LEVEL_NONE) if role else LEVEL_NONE
        opened = structure.opened
        key = (status, whole, on_service, all_level, service_level, role_level,
               structure.status, structure.kind, space.public_only, (code, None) in opened,
               service_id is not None and (code, service_id) in opened, service_status,
               q.action)
        found = self._fast_memo.get(key)
        if found is None:
            sub = SubjectFacts(status, whole, on_service, all_level, service_level, role_level)
            obj = SpaceFacts(structure.status, structure.kind, space.public_only, key[9],
                             key[10], service_status)
            allowed, row = self.policy.space(sub, obj, q.action)
            reason = None if allowed else deny_reason(
                Gathered(sub, obj, role, attachment_id, None, None), q.action)
            found = self._fast_memo[key] = (allowed, row, reason)
        allowed, row, reason = found
        if not allowed:
            return self._denied(reason)
        level = row[0]
        if all_level == level and all_sub is not None:
            rule = f"subscription:{all_sub[0]} {level} {q.space} (all services)"
        elif service_level == level and svc_sub is not None:
            scope = f"service {q.service}" if q.service else "all services"
            rule = f"subscription:{svc_sub[0]} {level} {q.space} ({scope})"
        else:
            rule = f"role-default:{role} {level} {q.space} (spaces.yaml)"
        return Decision(True, self.revision, rule=rule)

    def _management_fast(self, q, today: dt.date) -> Decision:  # noqa: ANN001
        if q.action not in self.policy.policies.actions:
            return self._denied("unknown action")
        index = self.index
        status = index.users.get(q.user_id)
        if status is None:
            return self._denied("unknown subject")
        structure = index.structures.get(q.structure_id)
        if structure is None:
            return self._denied("unknown structure")
        role = None
        if status == "active":
            membership = index.memberships.get((q.user_id, q.structure_id))
            if membership is not None:
                best = 0
                for att in membership.attachments:
                    if att.valid_from > today or (att.valid_until is not None
                                                  and today > att.valid_until):
                        continue
                    rank = ROLE_RANK[att.role]
                    if rank > best:
                        best, role = rank, att.role
        key = (role, q.action, structure.status)
        found = self._shared.get(key)
        if found is None:
            found = self._shared[key] = Decider._management(self, q, today)
        return found


def decide_prototype(rt: Runtime, size: WorldSize, rounds: int, n: int) -> None:
    decider = rt.decider
    index = decider.index
    questions = question_mix(rt, list(index.memberships), n, 42, list(index.users),
                             list(index.structures))
    fast = FastDecider(decider)
    today = utc_today()
    with decider.reading():
        slow_answers = [decider.decide(q, today=today) for q in questions]
        fast_answers = [fast.decide(q, today=today) for q in questions]
    differ = sum((a.allowed, a.revision, a.rule, a.reason) !=
                 (b.allowed, b.revision, b.rule, b.reason)
                 for a, b in zip(slow_answers, fast_answers))
    print(f"answers: {len(questions) - differ:,}/{len(questions):,} identical "
          "(allowed, revision, rule, reason)")
    orig_runs: list[Timing] = []
    fast_runs: list[Timing] = []
    for r in range(rounds):
        gc.collect()
        with decider.reading():
            orig_runs.append(time_calls(lambda q: decider.decide(q, today=today), questions))
            fast_runs.append(time_calls(lambda q: fast.decide(q, today=today), questions))
        print(f"  round {r + 1}: original p50 {orig_runs[-1].p50_us:.2f} µs p99 "
              f"{orig_runs[-1].p99_us:.2f} µs {orig_runs[-1].cps:,.0f}/s; prototype p50 "
              f"{fast_runs[-1].p50_us:.2f} µs p99 {fast_runs[-1].p99_us:.2f} µs "
              f"{fast_runs[-1].cps:,.0f}/s", flush=True)
    o, f = median_timing(orig_runs), median_timing(fast_runs)
    print(f"decide() original : p50 {o.p50_us:.2f} µs, p99 {o.p99_us:.2f} µs, "
          f"{o.cps:,.0f} checks/s")
    print(f"decide() prototype: p50 {f.p50_us:.2f} µs, p99 {f.p99_us:.2f} µs, "
          f"{f.cps:,.0f} checks/s")
    print(f"ratio: {f.cps / o.cps:.2f}× checks/s, p50 {o.p50_us / f.p50_us:.2f}× lower, "
          f"p99 {o.p99_us / f.p99_us:.2f}× lower")
    by_kind = {"space": [q for q in questions if q.space], "management":
               [q for q in questions if not q.space]}
    for kind, qs in by_kind.items():
        with decider.reading():
            a = time_calls(lambda q: decider.decide(q, today=today), qs)
            b = time_calls(lambda q: fast.decide(q, today=today), qs)
        print(f"  {kind:10s}: original {a.cps:,.0f}/s, prototype {b.cps:,.0f}/s "
              f"({b.cps / a.cps:.2f}×)")


# --- 2. the index's memory and load time -------------------------------------------

class CompactIndex(Index):
    """Index.load_all() with the same structures and values, loaded through
    plain driver rows, with every repeated value shared: the status, role,
    space and level strings, the dates, and the (space, service) key tuples.
    Rows read from the database are fresh objects each: 1,000,000 grants
    otherwise hold 1,000,000 copies of 'issued_invoices', of 'consult', ..."""

    int_values = False

    def load_all(self, session) -> None:  # noqa: ANN001
        self.__init__()
        conn = session.connection()
        int_values = self.int_values
        strings: dict[str, str] = {}
        dates: dict[object, dt.date] = {}
        keys: dict[tuple, tuple] = {}

        def s(value: str) -> str:
            return strings.setdefault(value, value)

        def d(value):  # noqa: ANN001, ANN202
            if value is None:
                return None
            found = dates.get(value)
            if found is None:
                found = dates[value] = (dt.date.fromisoformat(value)
                                        if isinstance(value, str) else value)
            return found

        users = self.users
        for uid, status in conn.exec_driver_sql("SELECT id, status FROM users"):
            users[uid] = s(status)
        structures = self.structures
        for sid, status, kind in conn.exec_driver_sql(
                "SELECT id, status, kind FROM structures"):
            structures[sid] = StructureEntry(status=s(status), kind=s(kind))
        for svc_id, sid, code, active in conn.exec_driver_sql(
                "SELECT id, structure_id, code, active FROM services"):
            entry = structures.get(sid)
            if entry is not None:
                entry.services[code] = (svc_id, bool(active))
                entry.codes[svc_id] = code
        for sid, space, svc_id in conn.exec_driver_sql(
                "SELECT structure_id, space_code, service_id FROM opened_spaces"):
            entry = structures.get(sid)
            if entry is not None:
                entry.opened.add((s(space), svc_id))
        membership = self._membership
        for aid, uid, sid, svc, role, start, end in conn.exec_driver_sql(
                "SELECT id, user_id, structure_id, service_id, role, valid_from, valid_until "
                "FROM attachments WHERE status = 'validated'"):
            membership(uid, sid).attachments.append(
                AttachmentEntry(aid, svc, s(role), d(start), d(end)))
        for sub_id, uid, sid, space, svc, level in conn.exec_driver_sql(
                "SELECT id, user_id, structure_id, space_code, service_id, level "
                "FROM subscriptions WHERE status = 'validated'"):
            key = (space, svc)
            shared = keys.get(key)
            if shared is None:
                shared = keys[key] = (s(space), svc)
            membership(uid, sid).subscriptions[shared] = (
                (sub_id if level == "consult" else -sub_id) if int_values
                else (sub_id, s(level)))


class CompactIntIndex(CompactIndex):
    """CompactIndex, and a grant's value is one int, +id for consult and -id for
    modify, instead of an (id, level) tuple (memory measure only: decide()
    would read the sign)."""

    int_values = True


def memory_child(url: str, mode: str) -> None:
    """In a fresh process: load the index of `mode`, print seconds and RSS growth."""
    rt = build_runtime(load_settings({"database_url": url, "mail_background": False,
                                      "log_level": "WARNING"}))
    decider = rt.decider
    decider.index = {"current": Index, "compact": CompactIndex,
                     "compact-int": CompactIntIndex}[mode]()
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    decider.load()
    seconds = time.perf_counter() - start
    gc.collect()
    grown = rss_mb() - before
    index = decider.index
    grants = sum(len(m.subscriptions) for m in index.memberships.values())
    tracked = len(gc.get_objects())
    start = time.perf_counter()
    gc.collect()
    full_gc_ms = (time.perf_counter() - start) * 1000
    gc.freeze()  # the index moves to the permanent generation: collections skip it
    start = time.perf_counter()
    gc.collect()
    frozen_gc_ms = (time.perf_counter() - start) * 1000
    print(json.dumps({"mode": mode, "seconds": seconds, "rss_growth_mb": grown,
                      "total_rss_mb": rss_mb(), "grants": grants,
                      "memberships": len(index.memberships), "gc_objects": tracked,
                      "full_gc_ms": full_gc_ms, "full_gc_after_freeze_ms": frozen_gc_ms}))
    close_runtime(rt)


def memory_prototype(url: str) -> None:
    results = {}
    for mode in ("current", "compact", "compact-int"):
        out = subprocess.run([sys.executable, "-m", "bench.prototype", "memory-child",
                              "--url", url, "--mode", mode], capture_output=True, text=True,
                             timeout=600, cwd=str(Path(__file__).resolve().parent.parent))
        if out.returncode:
            raise SystemExit(out.stderr)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(f"{mode:12s}: load {r['seconds']:.2f} s, RSS growth {r['rss_growth_mb']:.0f} MB "
              f"({r['rss_growth_mb'] * 1e6 / max(1, r['grants']):.0f} B/grant), process RSS "
              f"{r['total_rss_mb']:.0f} MB, {r['gc_objects']:,} GC-tracked objects; a full "
              f"gc.collect() {r['full_gc_ms']:.0f} ms, after gc.freeze() "
              f"{r['full_gc_after_freeze_ms']:.1f} ms", flush=True)
    base = results["current"]
    for mode in ("compact", "compact-int"):
        r = results[mode]
        print(f"{mode} / current: load {base['seconds'] / r['seconds']:.2f}× faster, "
              f"{base['rss_growth_mb'] / r['rss_growth_mb']:.2f}× less memory")


# --- 3. the freshness check ----------------------------------------------------------

def freshness_prototype(rt: Runtime, n: int = 3000) -> None:
    decider = rt.decider
    engine = decider.db_engine
    from models import PolicyRevision

    stmt = select(PolicyRevision.revision).where(PolicyRevision.id == 1)

    def core() -> int:
        with engine.connect() as conn:
            return conn.execute(stmt).scalar_one()

    raw = engine.raw_connection()
    cur = raw.cursor()

    def dbapi() -> int:
        cur.execute("SELECT revision FROM policy_revision WHERE id = 1")
        return cur.fetchone()[0]

    def data_version() -> int:
        cur.execute("PRAGMA data_version")
        return cur.fetchone()[0]

    variants = [("ensure_fresh() now (ORM Session + select, interval 0)", decider.ensure_fresh),
                ("Core connection, statement built once", core),
                ("driver cursor kept open, SELECT revision", dbapi)]
    if engine.dialect.name == "sqlite":
        variants.append(("SQLite PRAGMA data_version (changes by others?)", data_version))
    results = {}
    for name, fn in variants:
        timing = time_calls(lambda _: fn(), list(range(n)))
        results[name] = timing
        print(f"{name:58s} p50 {timing.p50_us:7.1f} µs  p99 {timing.p99_us:7.1f} µs  "
              f"{timing.cps:10,.0f}/s", flush=True)
    first = next(iter(results.values()))
    for name, timing in list(results.items())[1:]:
        print(f"  {name}: {first.p50_us / timing.p50_us:.0f}× cheaper than ensure_fresh()")
    cur.close()
    raw.close()


# --- 4. where an HTTP check's time goes --------------------------------------------------

def http_prototype(url: str, workdir: Path, n: int = 1000) -> None:
    """Per request, in this process (no server, no network): the whole WSGI
    call, and its parts."""
    from sqlalchemy.orm import sessionmaker

    from api import create_app
    from api import schemas
    from authz import checks, clients
    from authz.checks import Caller

    app = create_app({"database_url": url, "mail_background": False,
                      "log_level": "WARNING", "var_dir": str(workdir / "var")})
    rt = app.extensions["authz"]
    with rt.sessions() as session:
        _client, key = clients.create_client(session, rt, f"proto-{time.time_ns()}")
    index = rt.decider.index
    qs = question_mix(rt, list(index.memberships), 1000, 42, list(index.users),
                      list(index.structures))
    from .run import as_body

    single = json.dumps(as_body(qs[0])).encode()
    batch = json.dumps({"checks": [as_body(q) for q in qs]}).encode()

    def environ(method: str, path: str, body: bytes, auth: bool = True) -> dict:
        env = {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "bench",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(body),
               "wsgi.errors": io.StringIO(), "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": str(len(body))}
        if auth:
            env["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        return env

    def call(method: str, path: str, body: bytes = b"", auth: bool = True) -> None:
        statuses = []
        out = app.wsgi_app(environ(method, path, body, auth),
                           lambda status, headers, exc=None: statuses.append(status))
        b"".join(out)
        if not statuses or not statuses[0].startswith("200"):
            raise RuntimeError(f"{method} {path}: {statuses}")

    read_sessions = sessionmaker(bind=rt.decider.db_engine)
    caller = Caller(client_id=1)
    today = utc_today()
    batch_dict = json.loads(batch)
    decisions = checks.check_batch(rt, caller, qs)
    parts = [  # (name, call, repetitions, checks per call)
        ("GET /health/live, no key (Flask floor)",
         lambda: call("GET", "/health/live", auth=False), n, 0),
        ("POST /v1/checks (whole request)", lambda: call("POST", "/v1/checks", single), n, 1),
        ("  authenticate_client, write engine (BEGIN IMMEDIATE)",
         lambda: _auth(rt.sessions, rt, key), n, 0),
        ("  authenticate_client, read engine", lambda: _auth(read_sessions, rt, key), n, 0),
        ("  decider.ensure_fresh() (interval 0)", rt.decider.ensure_fresh, n, 0),
        ("  decider.decide()", lambda: rt.decider.decide(qs[0], today=today), n, 1),
        ("  CheckSchema().load(body)",
         lambda: schemas.CheckSchema().load(json.loads(single)), n, 1),
        ("POST /v1/checks/batch, 1000 checks (whole request)",
         lambda: call("POST", "/v1/checks/batch", batch), 20, 1000),
        ("  BatchSchema().load(body)", lambda: schemas.BatchSchema().load(batch_dict), 20, 1000),
        ("  checks.check_batch() (1000 decisions)",
         lambda: checks.check_batch(rt, caller, qs), 20, 1000),
        ("  Decision.as_dict() x 1000", lambda: [d.as_dict() for d in decisions], 20, 1000),
        ("  BatchDecisionSchema().dump()", lambda: schemas.BatchDecisionSchema().dump(
            {"revision": 1, "decisions": [d.as_dict() for d in decisions]}), 20, 1000),
        ("  json.dumps of the answer", lambda: json.dumps(
            {"revision": 1, "decisions": [d.as_dict() for d in decisions]}), 20, 1000),
    ]
    for name, fn, count, per_call in parts:
        fn()
        timing = time_calls(lambda _: fn(), list(range(count)))
        per = f" = {timing.p50_us / per_call:6.1f} µs per check" if per_call > 1 else ""
        print(f"{name:58s} p50 {timing.p50_us:9.1f} µs{per}", flush=True)


def gc_prototype(url: str, workdir: Path, requests: int = 60) -> None:
    """Batch requests of 1000 checks through app.wsgi_app, as a worker serves
    them: latency and the full (generation 2) collections they trigger, before
    and after gc.freeze() (which moves the loaded index out of the collector's
    reach)."""
    from api import create_app
    from authz import clients

    from .run import as_body, pct

    app = create_app({"database_url": url, "mail_background": False,
                      "log_level": "WARNING", "var_dir": str(workdir / "var")})
    rt = app.extensions["authz"]
    with rt.sessions() as session:
        _client, key = clients.create_client(session, rt, f"proto-{time.time_ns()}")
    index = rt.decider.index
    qs = question_mix(rt, list(index.memberships), 20_000, 42, list(index.users),
                      list(index.structures))
    bodies = [json.dumps({"checks": [as_body(q) for q in qs[i:i + 1000]]}).encode()
              for i in range(0, len(qs), 1000)]
    full: list[float] = []

    def watch(phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            watch.t0 = time.perf_counter()  # type: ignore[attr-defined]
        else:
            full.append((time.perf_counter() - watch.t0) * 1000)  # type: ignore[attr-defined]

    def run(label: str) -> None:
        full.clear()
        lat = []
        for i in range(requests):
            body = bodies[i % len(bodies)]
            env = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/checks/batch",
                   "SERVER_NAME": "bench", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
                   "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
                   "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
                   "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
                   "HTTP_AUTHORIZATION": f"Bearer {key}"}
            start = time.perf_counter()
            b"".join(app.wsgi_app(env, lambda *a: None))
            lat.append((time.perf_counter() - start) * 1000)
        print(f"{label:28s} {requests} batches of 1000: p50 {pct(lat, 50):7.1f} ms, max "
              f"{max(lat):7.1f} ms; full collections: {len(full)}"
              + (f", {', '.join(f'{v:.0f}' for v in full)} ms" if full else ""), flush=True)

    gc.callbacks.append(watch)
    print(f"GC-tracked objects after start-up: {len(gc.get_objects()):,}")
    run("as served now")
    gc.collect()
    gc.freeze()
    run("after gc.freeze()")
    gc.callbacks.remove(watch)


SERVE_VARIANTS = {
    # name: (identity on the read engine, check interval s, gunicorn worker options)
    "as shipped (sync workers)": (False, 0.0, {}),
    "identity session on the read engine": (True, 0.0, {}),
    "+ AUTHZ_DECISION_CHECK_INTERVAL_SECONDS=0.05": (True, 0.05, {}),
    "+ gthread workers, keep-alive": (True, 0.05, {"worker_class": "gthread", "threads": 2,
                                                   "keepalive": 5}),
}


def serve_child(variant: str, bind: str) -> None:
    """gunicorn with 2 workers on the service's app, changed as `variant` says
    (prototype only: the service's `authz serve` is api/cli.py)."""
    from gunicorn.app.base import BaseApplication
    from sqlalchemy.orm import sessionmaker

    read_identity, interval, options = SERVE_VARIANTS[variant]

    class App(BaseApplication):
        def load_config(self) -> None:
            for key, value in {"bind": bind, "workers": 2, "preload_app": False,
                               "control_socket_disable": True, "accesslog": "-",
                               "errorlog": "-", "loglevel": "warning", **options}.items():
                self.cfg.set(key, value)

        def load(self):  # noqa: ANN202
            from api import create_app

            app = create_app()
            rt = app.extensions["authz"]
            if read_identity:
                rt.sessions = sessionmaker(bind=rt.decider.db_engine, expire_on_commit=False)
            rt.decider._check_interval = interval
            return app

    App().run()


def serve_prototype(url: str, workdir: Path, seconds: int = 5) -> None:
    import os
    import signal

    from authz import clients

    from .run import as_body, free_port, http_json, run_wrk

    rt = build_runtime(load_settings({"database_url": url, "mail_background": False,
                                      "log_level": "WARNING"}))
    rt.decider.load()
    index = rt.decider.index
    qs = question_mix(rt, list(index.memberships), 20_000, 42, list(index.users),
                      list(index.structures))
    with rt.sessions() as session:
        _client, key = clients.create_client(session, rt, f"proto-{time.time_ns()}")
    close_runtime(rt)
    files = {"live": ["/health/live"], "single": [json.dumps(as_body(q)) for q in qs],
             "batch": [json.dumps({"checks": [as_body(q) for q in qs[i:i + 1000]]})
                       for i in range(0, len(qs), 1000)]}
    for name, lines in files.items():
        (workdir / f"{name}.bodies").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "AUTHZ_DATABASE_URL": url, "AUTHZ_MAIL_BACKGROUND": "false",
           "AUTHZ_LOG_LEVEL": "WARNING", "AUTHZ_VAR_DIR": str(workdir / "var")}
    print(f"{'variant':46s} {'GET /health/live':>16s} {'single checks/s':>16s} "
          f"{'p50 / p99 ms':>14s} {'batch-1000 checks/s':>20s} {'p99 ms':>8s}")
    for variant in SERVE_VARIANTS:
        port = free_port()
        with open(workdir / "serve.log", "ab") as logfile:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.prototype", "serve-child", "--mode", variant,
                 "--url", f"127.0.0.1:{port}"], env=env, stdout=logfile,
                stderr=subprocess.STDOUT, start_new_session=True,
                cwd=str(Path(__file__).resolve().parent.parent))
        try:
            deadline = time.perf_counter() + 240
            while True:
                if proc.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError(f"{variant}: server did not start; see "
                                       f"{workdir / 'serve.log'}")
                try:
                    if http_json(port, "GET", "/health/ready", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.05)
            time.sleep(1.0)
            for _ in range(8):  # each worker verifies the key once
                http_json(port, "POST", "/v1/checks", as_body(qs[0]), key, timeout=30)
            live = run_wrk(port, "GET", workdir / "live.bodies", key, seconds, 4, 1, workdir)
            single = run_wrk(port, "/v1/checks", workdir / "single.bodies", key, seconds, 4, 1,
                             workdir)
            batch = run_wrk(port, "/v1/checks/batch", workdir / "batch.bodies", key, seconds,
                            4, 1, workdir)
            print(f"{variant:46s} {live.rps:16,.0f} {single.rps:16,.0f} "
                  f"{single.p50_ms:6.2f} / {single.p99_ms:6.1f} {batch.rps * 1000:20,.0f} "
                  f"{batch.p99_ms:8.0f}" + (f"  ({single.errors + batch.errors} errors)"
                                            if single.errors + batch.errors else ""),
                  flush=True)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def _auth(sessions, rt: Runtime, key: str) -> None:  # noqa: ANN001
    from authz import clients

    with sessions() as session:
        if clients.authenticate_client(session, rt, key) is None:
            raise RuntimeError("key refused")


# --- main ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("decide", "memory", "freshness", "http", "gc",
                                         "serve", "memory-child", "serve-child"))
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.what == "memory-child":
        memory_child(args.url, args.mode)
        return
    if args.what == "serve-child":
        serve_child(args.mode, args.url)
        return
    prof = SIZES[args.size]
    size = WorldSize(prof.users, prof.structures, prof.grants)
    world = ensure_world(size, log=lambda m: print(m, file=sys.stderr))
    print(f"world: {size.users:,} users, {size.structures:,} structures, {size.grants:,} grants")
    if args.what == "memory":
        memory_prototype(world.url)  # read only
        return
    workdir = Path(tempfile.mkdtemp(prefix="proto-", dir=CACHE_DIR))
    try:
        work = workdir / "authz.db"
        shutil.copyfile(world.path, work)
        url = f"sqlite:///{work}"
        if args.what == "http":
            http_prototype(url, workdir)
            return
        if args.what == "gc":
            gc_prototype(url, workdir)
            return
        if args.what == "serve":
            serve_prototype(url, workdir)
            return
        rt = build_runtime(load_settings({"database_url": url, "mail_background": False,
                                          "log_level": "WARNING"}))
        try:
            rt.decider.load()
            if args.what == "decide":
                decide_prototype(rt, size, args.rounds, prof.questions)
            else:
                freshness_prototype(rt)
        finally:
            close_runtime(rt)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
