"""A generated world for the benchmarks: N users, S structures, G grants.

Written straight into a migrated database with SQLAlchemy Core bulk inserts
(executemany in chunks), so 1,000,000 grants take well under a minute on SQLite.

    .venv/bin/python -m bench.world --users 100000 --structures 10000 --grants 1000000

What is generated (fixed by --seed, so a size always gives the same world):

- users: mostly active, some pending / inactive / closed, a few technical;
- structures: ~30 % public, ~2 % inactive, 0 to 6 services each (a few inactive);
- opened spaces per policies/spaces.yaml: the opened_by_default ones on the whole
  structure (public-only spaces only on public structures, a few closed), some
  others on the structure or on one service;
- attachments: one validated principal per structure (partial unique index),
  then secondaries, simple and technical users on the whole structure or on one
  or two services; most validated, a few pending/deactivated/refused/deleted;
  most open-ended, some with a date window (current, expired or future);
- subscriptions (the "grants"): G rows, unique per (user, structure, space,
  service or NULL) as the partial unique indexes demand, on the spaces a
  structure of that kind has, mostly to members; ~97 % validated;
- the policy revision set to 1 (one 'all' change: workers load everything).

SQLite worlds are cached under var/bench/ keyed by the parameters (and the
generator's version), so re-runs reuse them. Another --database-url (e.g.
PostgreSQL `postgresql+psycopg://postgres@127.0.0.1/authz_bench`) is filled in
place and must be empty.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from authz import db, textkeys
from authz.config import ROOT, load_settings
from authz.engine.policy import load_policies, sync_space_catalogue
from models import (
    Attachment,
    OpenedSpace,
    PolicyChange,
    PolicyRevision,
    Service,
    Structure,
    Subscription,
    User,
)

# Bump when the generated world changes: cached files of older versions are ignored.
GENERATOR_VERSION = 1
CACHE_DIR = ROOT / "var" / "bench"
CHUNK = 20_000

# How often each space is subscribed to (public-only ones only on public structures).
SPACE_WEIGHTS = {
    "issued_invoices": 30,
    "received_invoices": 18,
    "invoices_to_validate": 8,
    "works_invoices": 6,
    "issued_solicitations": 10,
    "received_solicitations": 8,
    "legal_commitments": 6,
    "edi_api_connections": 3,
    "my_account": 2,
    "manager_activities": 2,
}


@dataclass(frozen=True)
class WorldSize:
    users: int
    structures: int
    grants: int
    seed: int = 1

    @property
    def stem(self) -> str:
        return f"world-u{self.users}-s{self.structures}-g{self.grants}-r{self.seed}"

    @property
    def key(self) -> str:
        """The cache key: the parameters, the generator's version and the schema's
        migration head (a new migration means a new world, not an upgrade of
        a cached one, which could take long on 1,000,000 rows)."""
        return f"{self.stem}-v{GENERATOR_VERSION}-m{schema_head()}"


def schema_head() -> str:
    heads = ScriptDirectory.from_config(db.alembic_config(None)).get_heads()
    return "+".join(sorted(heads))


@dataclass
class WorldReport:
    url: str
    path: Path | None
    cached: bool
    seconds: float
    rows: dict[str, int]


def cache_path(size: WorldSize) -> Path:
    return CACHE_DIR / f"{size.key}.db"


def reset_database(url: str) -> None:
    """Empty a PostgreSQL benchmark database (its public schema), refusing any
    database whose name does not contain "bench"."""
    name = make_url(url).database or ""
    if "bench" not in name:
        raise SystemExit(
            f"refusing to reset {name!r}: only a database named *bench* (e.g. authz_bench) is reset"
        )
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def ensure_world(
    size: WorldSize, database_url: str | None = None, log=lambda _msg: None, reset: bool = False
) -> WorldReport:
    """The world of `size`: from the cache when there, else generated. A
    PostgreSQL database is filled in place; `reset` empties it first (a run
    writes to it, so each run regenerates: pass reset=True)."""
    if database_url and not database_url.startswith("sqlite"):
        start = time.perf_counter()
        if reset:
            reset_database(database_url)
        rows = generate(database_url, size, log)
        return WorldReport(database_url, None, False, time.perf_counter() - start, rows)
    path = Path(database_url.removeprefix("sqlite:///")) if database_url else cache_path(size)
    if path.exists():
        return WorldReport(f"sqlite:///{path}", path, True, 0.0, {})
    path.parent.mkdir(parents=True, exist_ok=True)
    if not database_url:  # worlds of the same parameters from older versions or schemas
        for stale in path.parent.glob(f"{size.stem}-v*.db"):
            if stale != path:
                log(f"removing the stale cached world {stale.name}")
                stale.unlink(missing_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        rows = generate(f"sqlite:///{tmp}", size, log)
        tmp.replace(path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
    return WorldReport(f"sqlite:///{path}", path, False, time.perf_counter() - start, rows)


# --- generation -----------------------------------------------------------------


def _bulk_engine(url: str):
    """An engine for loading: on SQLite, no fsync and WAL while generating."""
    if not url.startswith("sqlite"):
        engine = create_engine(url)

        @event.listens_for(engine, "connect")
        def _pg(dbapi_connection, _record):
            with dbapi_connection.cursor() as cur:
                cur.execute("SET synchronous_commit = off")

        return engine
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _sqlite(dbapi_connection, _record):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = OFF")
        cur.execute("PRAGMA foreign_keys = OFF")
        cur.execute("PRAGMA cache_size = -262144")  # 256 MiB page cache
        cur.execute("PRAGMA temp_store = MEMORY")
        cur.close()

    return engine


def _search_keys() -> dict[str, dict[str, str]]:
    """table name -> {searchable column: its folded key column}, for the schema's
    search keys that the ORM fills on writes and Core bulk inserts must fill
    themselves (authz/textkeys.py)."""
    keys = textkeys.KEYS
    return {model.__table__.name: dict(pairs) for model, pairs in keys.items()}


def _insert(conn, table, rows: list[dict], counts: dict[str, int]) -> None:
    keys = _search_keys().get(table.name)
    if keys:
        cache: dict[str, str] = {}
        for row in rows:
            for source, key in keys.items():
                value = row[source]
                folded = cache.get(value)
                if folded is None:
                    folded = cache[value] = textkeys.fold(value)
                row[key] = folded
    for start in range(0, len(rows), CHUNK):
        conn.execute(insert(table), rows[start : start + CHUNK])
    counts[table.name] = counts.get(table.name, 0) + len(rows)


def generate(url: str, size: WorldSize, log=lambda _msg: None) -> dict[str, int]:
    """Migrate the database at `url`, then write the world of `size` into it."""
    settings = load_settings({"database_url": url})
    service_engine = db.make_engine(settings)
    db.upgrade(service_engine)
    policies = load_policies(settings.policy_dir)
    with Session(service_engine) as session, session.begin():
        sync_space_catalogue(session, policies)
        if session.scalar(select(func.count()).select_from(User)):
            raise SystemExit(f"{url}: the database already has users; give an empty one")
    service_engine.dispose()

    rng = random.Random(size.seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    today = now.date()
    spaces = policies.spaces
    counts: dict[str, int] = {}
    t0 = time.perf_counter()
    engine = _bulk_engine(url)
    with engine.begin() as conn:
        # Users.
        user_status = ["active"] * 90 + ["pending"] * 5 + ["inactive"] * 4 + ["closed"]
        users, technical, active_ids = [], set(), []
        for uid in range(1, size.users + 1):
            status = user_status[int(rng.random() * 100)]
            kind = "technical" if rng.random() < 0.02 else "person"
            if kind == "technical":
                technical.add(uid)
            if status == "active":
                active_ids.append(uid)
            users.append(
                {
                    "id": uid,
                    "login_email": f"user{uid}@bench.example",
                    "contact_email": f"user{uid}@bench.example",
                    "last_name": f"Last{uid}",
                    "first_name": "First",
                    "phone": None,
                    "kind": kind,
                    "status": status,
                    "platform_role": None,
                    "password_hash": None,
                    "created_at": now,
                    "updated_at": now,
                    "activated_at": now if status != "pending" else None,
                    "deactivated_at": now if status == "inactive" else None,
                    "closed_at": now if status == "closed" else None,
                }
            )
        _insert(conn, User.__table__, users, counts)
        del users
        log(f"  users: {size.users:,} ({time.perf_counter() - t0:.1f} s)")

        # Structures, services, opened spaces.
        structures, services, opened = [], [], []
        kind_of: dict[int, str] = {}
        services_of: dict[int, list[int]] = {}
        next_service = 1
        n_services = [0] * 40 + [1] * 20 + [2] * 15 + [3] * 10 + [4] * 7 + [5] * 5 + [6] * 3
        for sid in range(1, size.structures + 1):
            kind = "public" if rng.random() < 0.3 else "private"
            kind_of[sid] = kind
            structures.append(
                {
                    "id": sid,
                    "identifier_type": "SIRET",
                    "identifier_value": f"{sid:014d}",
                    "designation": f"Structure {sid}",
                    "kind": kind,
                    "status": "inactive" if rng.random() < 0.02 else "active",
                    "centrally_managed": kind == "public" and rng.random() < 0.5,
                    "invoice_requires_service": False,
                    "legal_commitment_required": False,
                    "origin_id": None,
                    "successor_id": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            ids = []
            for j in range(n_services[int(rng.random() * 100)]):
                ids.append(next_service)
                services.append(
                    {
                        "id": next_service,
                        "structure_id": sid,
                        "code": f"SVC{j + 1:02d}",
                        "label": f"Service {j + 1}",
                        "active": rng.random() >= 0.05,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                next_service += 1
            services_of[sid] = ids
            for space in spaces:
                if space.public_only and kind != "public":
                    continue
                if (rng.random() < 0.95) if space.opened_by_default else (rng.random() < 0.25):
                    opened.append(
                        {
                            "structure_id": sid,
                            "service_id": None,
                            "space_code": space.code,
                            "opened_at": now,
                        }
                    )
            closed = [s for s in spaces if not s.opened_by_default]
            for svc in ids:
                if rng.random() < 0.15:
                    space = closed[int(rng.random() * len(closed))]
                    opened.append(
                        {
                            "structure_id": sid,
                            "service_id": svc,
                            "space_code": space.code,
                            "opened_at": now,
                        }
                    )
        _insert(conn, Structure.__table__, structures, counts)
        _insert(conn, Service.__table__, services, counts)
        _insert(conn, OpenedSpace.__table__, opened, counts)
        del structures, services, opened
        log(
            f"  structures: {size.structures:,}, services: {counts['services']:,}, "
            f"opened spaces: {counts['opened_spaces']:,} ({time.perf_counter() - t0:.1f} s)"
        )

        # Attachments: one principal per structure, then members, skewed towards
        # big structures and a few users attached to many structures.
        def window() -> tuple[dt.date, dt.date | None]:
            r = rng.random()
            start = today - dt.timedelta(days=1 + int(rng.random() * 1500))
            if r < 0.85:
                return start, None
            if r < 0.95:  # a window around today
                return start, today + dt.timedelta(days=1 + int(rng.random() * 365))
            if r < 0.98:  # expired
                end = today - dt.timedelta(days=1 + int(rng.random() * 30))
                return end - dt.timedelta(days=int(rng.random() * 1500)), end
            begin = today + dt.timedelta(days=1 + int(rng.random() * 60))  # not yet
            return begin, begin + dt.timedelta(days=365)

        attachments: list[dict] = []
        # membership: (user, structure, service ids covered or None for whole)
        memberships: list[tuple[int, int, tuple[int, ...] | None]] = []
        pairs: set[tuple[int, int]] = set()

        def attach(uid, sid, svc, role, status, start, end):
            attachments.append(
                {
                    "id": len(attachments) + 1,
                    "user_id": uid,
                    "structure_id": sid,
                    "service_id": svc,
                    "role": role,
                    "status": status,
                    "valid_from": start,
                    "valid_until": end,
                    "created_at": now,
                    "updated_at": now,
                    "created_by_id": None,
                }
            )

        principals = active_ids or list(range(1, size.users + 1))
        for sid in range(1, size.structures + 1):
            if rng.random() < 0.99:
                uid = principals[int(rng.random() * len(principals))]
                if (uid, sid) in pairs:
                    continue
                pairs.add((uid, sid))
                attach(
                    uid,
                    sid,
                    None,
                    "principal",
                    "validated",
                    today - dt.timedelta(days=1 + int(rng.random() * 1500)),
                    None,
                )
                memberships.append((uid, sid, None))
        target = max(size.grants // 3, len(memberships))
        power = list(range(1, max(2, size.users // 100) + 1))  # 1 %: many structures each
        rng.shuffle(power)
        weights = [1.0 / (rank**0.8) for rank in range(1, size.structures + 1)]
        order = list(range(1, size.structures + 1))
        rng.shuffle(order)
        cum, total = [], 0.0
        for w in weights:
            total += w
            cum.append(total)
        att_status = (
            ["validated"] * 92 + ["pending"] * 3 + ["deactivated"] * 3 + ["refused", "deleted"]
        )
        attempts = 0
        while len(memberships) < target and attempts < target * 4:
            attempts += 1
            uid = (
                power[int(rng.random() * len(power))]
                if rng.random() < 0.2
                else 1 + int(rng.random() * size.users)
            )
            sid = order[_bisect(cum, rng.random() * total)]
            if (uid, sid) in pairs:
                continue
            pairs.add((uid, sid))
            role = (
                "technical"
                if uid in technical
                else "secondary"
                if rng.random() < 0.12
                else "simple"
            )
            status = att_status[int(rng.random() * 100)]
            start, end = window()
            svcs = services_of[sid]
            if svcs and rng.random() < 0.2:  # on one or two services only
                chosen = tuple(rng.sample(svcs, min(len(svcs), 1 + (rng.random() < 0.3))))
                for svc in chosen:
                    attach(uid, sid, svc, role, status, start, end)
                memberships.append((uid, sid, chosen))
            else:
                attach(uid, sid, None, role, status, start, end)
                memberships.append((uid, sid, None))
        _insert(conn, Attachment.__table__, attachments, counts)
        attachments = []
        log(
            f"  attachments: {counts['attachments']:,} for {len(memberships):,} "
            f"memberships ({time.perf_counter() - t0:.1f} s)"
        )

        # Subscriptions: G unique (user, structure, space, service or NULL).
        pools = {}
        for kind in ("public", "private"):
            pool = []
            for space in spaces:
                if space.public_only and kind != "public":
                    continue
                pool += [space.code] * SPACE_WEIGHTS.get(space.code, 1)
            pools[kind] = pool
        n_spaces = {k: len(set(p)) for k, p in pools.items()}
        rng.shuffle(memberships)
        mean = size.grants / max(1, len(memberships))
        given = [0] * len(memberships)
        taken: list[set] = [set() for _ in memberships]
        subscriptions: list[dict] = []
        sub_status = ["validated"] * 97 + ["deactivated"] * 3

        def grant(m: int) -> bool:
            uid, sid, svcs = memberships[m]
            pool = pools[kind_of[sid]]
            all_svcs = services_of[sid]
            for _ in range(8):
                space = pool[int(rng.random() * len(pool))]
                if svcs is None:
                    svc = (
                        None
                        if not all_svcs or rng.random() < 0.75
                        else all_svcs[int(rng.random() * len(all_svcs))]
                    )
                else:
                    svc = None if rng.random() < 0.2 else svcs[int(rng.random() * len(svcs))]
                key = (space, svc)
                if key in taken[m]:
                    continue
                taken[m].add(key)
                subscriptions.append(
                    {
                        "id": len(subscriptions) + 1,
                        "user_id": uid,
                        "structure_id": sid,
                        "service_id": svc,
                        "space_code": space,
                        "level": "modify" if rng.random() < 0.4 else "consult",
                        "status": sub_status[int(rng.random() * 100)],
                        "created_at": now,
                        "updated_at": now,
                        "granted_by_id": None,
                    }
                )
                return True
            return False

        flushed = 0

        def flush(final: bool = False) -> None:
            nonlocal flushed
            if len(subscriptions) - flushed >= 200_000 or (final and len(subscriptions) > flushed):
                _insert(conn, Subscription.__table__, subscriptions[flushed:], counts)
                flushed = len(subscriptions)

        for m in range(len(memberships)):
            if len(subscriptions) >= size.grants:
                break
            cap = n_spaces[kind_of[memberships[m][1]]] * (1 + len(services_of[memberships[m][1]]))
            k = min(
                cap,
                1 + int(rng.expovariate(1.0 / max(mean - 1.0, 0.01))),
                size.grants - len(subscriptions),
            )
            for _ in range(k):
                given[m] += grant(m)
            flush()
        passes = 0
        while len(subscriptions) < size.grants and passes < 50:  # top up, bounded
            passes += 1
            before = len(subscriptions)
            for m in range(len(memberships)):
                if len(subscriptions) >= size.grants:
                    break
                grant(m)
            flush()
            if len(subscriptions) == before:
                break
        flush(final=True)
        taken = []
        log(
            f"  subscriptions: {counts.get('subscriptions', 0):,} "
            f"({time.perf_counter() - t0:.1f} s)"
        )

        conn.execute(
            update(PolicyRevision).where(PolicyRevision.id == 1).values(revision=1, updated_at=now)
        )
        conn.execute(
            insert(PolicyChange),
            [{"revision": 1, "scope": "all", "a": None, "b": None, "created_at": now}],
        )
    if url.startswith("sqlite"):
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        with engine.begin() as conn:  # ids were given explicitly: move the sequences on
            for table in ("users", "structures", "services", "attachments", "subscriptions"):
                # The table names are the literals above, not input.
                sql = (
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                    f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                )
                conn.execute(text(sql))
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    engine.dispose()
    log(f"  done in {time.perf_counter() - t0:.1f} s")
    return counts


def _bisect(cum: list[float], x: float) -> int:
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--structures", type=int, default=10_000)
    parser.add_argument("--grants", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url",
        default=None,
        help="default: a cached SQLite file under var/bench/; a PostgreSQL "
        "URL must name an empty database, or one named *bench* with "
        "--reset",
    )
    parser.add_argument(
        "--reset", action="store_true", help="PostgreSQL: empty the (*bench*) database first"
    )
    args = parser.parse_args(argv)
    size = WorldSize(args.users, args.structures, args.grants, args.seed)
    report = ensure_world(
        size,
        args.database_url,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
        reset=args.reset,
    )
    if report.cached:
        print(f"cached: {report.url}")
    else:
        print(f"generated in {report.seconds:.1f} s: {report.url}")
        print(", ".join(f"{name} {n:,}" for name, n in report.rows.items()))


if __name__ == "__main__":
    main()
