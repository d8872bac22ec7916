"""The manager API on a big structure: list and search the people of a structure
with 10,000 users, as its principal, through the Flask test client.

    .venv/bin/python -m bench.managers [--database-url URL] [--users 10000] [--n 200]

The world (written with Core bulk inserts into a freshly migrated database: a
temporary SQLite file by default; a PostgreSQL database whose name contains
"bench" is emptied first, see bench/world.py reset_database):

- one private structure with 6 services and its principal (who logs in: a
  bearer token), and `--users` attached users with varied names (a few hundred
  last names x first names, accents included) and emails; ~90 % validated
  (a share on one or two services only), the rest pending (each with its
  pending attachment request), deactivated, refused or deleted; secondaries
  among them; ~60 % of the members hold subscriptions on 1 to 3 spaces;
- the structure's history: one entry per attachment and per request;
- other structures with as many users again, so that portal-wide searches
  (candidates) and the managed-structure subqueries do not see only ours.

Operations timed (N requests each, after 10 warm-up requests; the first
request of each is checked for a 200 and a non-empty answer):

- GET /v1/structures/{id}/users, page 1 and a late page (page 150 of 50);
- GET /v1/users?last_name=…, ?first_name=…, ?login_email=… (fragments),
  ?service=… and a combined last_name + status;
- GET /v1/attachment-requests?structure_id=…&status=pending, and
  /v1/subscription-requests likewise;
- GET /v1/structures/{id}/history, page 1 and with user_id;
- GET /v1/structures/{id}/candidates by names and by login email. Its throttle
  allows CANDIDATE_SEARCHES (30) searches per caller per window: the bench
  raises that constant for its own process (the reservation itself, one
  counter row written per search, is still done and timed).

Prints p50 / p99 / max in ms per operation, the SQL statements per request,
and the load average before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import event, insert
from sqlalchemy.orm import Session

from api import create_app
from authz import textkeys
from authz.config import load_settings
from authz.db import make_engine, upgrade
from authz.engine.policy import load_policies, sync_space_catalogue
from authz.roles import today
from authz.runtime import close_runtime
from authz.workflows import accounts, candidates
from bench.app import bench_settings
from models import (
    Attachment,
    AttachmentRequest,
    HistoryEntry,
    OpenedSpace,
    Service,
    Structure,
    Subscription,
    SubscriptionRequest,
    SubscriptionRequestLine,
    User,
)

from .world import reset_database

PASSWORD = "Bench-managers-1"  # noqa: S105 - a throw-away account
TARGET_P99_MS = 50.0
CHUNK = 5_000

LAST = [
    "Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois",
    "Moreau", "Laurent", "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David",
    "Bertrand", "Morel", "Fournier", "Girard", "Bonnet", "Dupont", "Lambert", "Fontaine",
    "Rousseau", "Vincent", "Muller", "Lefebvre", "Faure", "André", "Mercier", "Blanc",
    "Guérin", "Boyer", "Garnier", "Chevalier", "François", "Legrand", "Gauthier", "Garcia",
    "Perrin", "Robin", "Clément", "Morin", "Nicolas", "Henry", "Roussel", "Mathieu",
    "Gautier", "Masson", "Marchand", "Duval", "Denis", "Dumont", "Marie", "Lemaire",
    "Noël", "Meyer", "Dufour", "Meunier", "Brun", "Blanchard", "Giraud", "Joly",
    "Rivière", "Lucas", "Brunet", "Gaillard", "Barbier", "Arnaud", "Martínez", "Gérard",
    "Roche", "Renard", "Schmitt", "Roy", "Leroux", "Colin", "Vidal", "Caron",
]  # fmt: skip
FIRST = [
    "Marie", "Jean", "Pierre", "Michel", "André", "Philippe", "Nathalie", "Isabelle",
    "Sylvie", "Catherine", "Françoise", "Alain", "Jacques", "Bernard", "Hélène", "Éric",
    "Nicolas", "Christophe", "Stéphane", "Céline", "Julie", "Sophie", "Laurent", "Anne",
    "Thierry", "Valérie", "Sandrine", "Frédéric", "Olivier", "Patrick", "Chloé", "Léa",
    "Zoé", "Noémie", "Maël", "Inès", "Jérôme", "Agnès", "Gaëlle", "Loïc",
]  # fmt: skip


def _insert(conn, model, rows: list[dict]) -> None:
    keys = textkeys.KEYS.get(model, {})
    for row in rows:
        for source, key in keys.items():
            row[key] = textkeys.fold(row[source])
    for start in range(0, len(rows), CHUNK):
        conn.execute(insert(model.__table__), rows[start : start + CHUNK])


def build(rt, n_users: int, seed: int = 7) -> dict:
    """Write the world into the runtime's (migrated, empty) database; returns
    the ids and terms the timed requests use."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    day = today()
    spaces = [s.code for s in load_policies(rt.settings.policy_dir).spaces if not s.public_only]
    n_other_structures = 20
    users, structures, services, opened = [], [], [], []
    attachments, subscriptions, history = [], [], []
    att_requests, sub_requests, sub_lines = [], [], []

    def user(uid: int, status: str = "active") -> dict:
        last, first = rng.choice(LAST), rng.choice(FIRST)
        email = f"{textkeys.fold(first)}.{textkeys.fold(last)}.{uid}@{rng.choice(DOMAINS)}"
        email = email.replace(" ", "-")
        return {
            "id": uid,
            "login_email": email,
            "contact_email": email,
            "last_name": last,
            "first_name": first,
            "phone": None,
            "kind": "person",
            "status": status,
            "platform_role": None,
            "password_hash": None,
            "created_at": now,
            "updated_at": now,
            "activated_at": now if status != "pending" else None,
            "deactivated_at": None,
            "closed_at": None,
        }

    def attach(uid, sid, svc, role, status, days_ago):
        attachments.append(
            {
                "id": len(attachments) + 1,
                "user_id": uid,
                "structure_id": sid,
                "service_id": svc,
                "role": role,
                "status": status,
                "valid_from": day - dt.timedelta(days=days_ago),
                "valid_until": None,
                "created_at": now - dt.timedelta(days=days_ago),
                "updated_at": now,
                "created_by_id": None,
            }
        )

    def entry(sid, actor, action, target, days_ago, request=None):
        history.append(
            {
                "id": len(history) + 1,
                "structure_id": sid,
                "actor_id": actor,
                "action": action,
                "target_user_id": target,
                "request_kind": request[0] if request else None,
                "request_id": request[1] if request else None,
                "comment": "Validated",
                "before": None,
                "after": {"role": "simple"},
                "created_at": now - dt.timedelta(days=days_ago, seconds=rng.randrange(86_400)),
            }
        )

    # The structure under test (id 1), its principal (user 1), its services.
    principal = user(1)
    principal["password_hash"] = rt.hasher.hash(PASSWORD)
    users.append(principal)
    next_service = 1
    services_of: dict[int, list[int]] = {}
    for sid in range(1, n_other_structures + 2):
        structures.append(
            {
                "id": sid,
                "identifier_type": "SIRET",
                "identifier_value": f"{sid:014d}",
                "designation": f"Structure {sid}" if sid > 1 else "Bench Managers Ltd",
                "kind": "private",
                "status": "active",
                "centrally_managed": False,
                "invoice_requires_service": False,
                "legal_commitment_required": False,
                "origin_id": None,
                "successor_id": None,
                "created_at": now,
                "updated_at": now,
            }
        )
        services_of[sid] = []
        for j in range(6 if sid == 1 else 2):
            services.append(
                {
                    "id": next_service,
                    "structure_id": sid,
                    "code": f"SVC{j + 1:02d}",
                    "label": f"Service {['north', 'south', 'east', 'west', 'hq', 'lab'][j]}",
                    "active": True,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            services_of[sid].append(next_service)
            next_service += 1
        opened.extend(
            {"structure_id": sid, "service_id": None, "space_code": code, "opened_at": now}
            for code in spaces
        )
    attach(1, 1, None, "principal", "validated", 2000)
    entry(1, None, "structure.created", 1, 2000)

    statuses = ["validated"] * 90 + ["pending"] * 3 + ["deactivated"] * 4 + ["refused"] * 2
    statuses += ["deleted"]
    uid = 1
    for sid, count in [(1, n_users)] + [
        (s, max(1, n_users // n_other_structures)) for s in range(2, n_other_structures + 2)
    ]:
        if sid > 1:  # each other structure's principal
            uid += 1
            users.append(user(uid))
            attach(uid, sid, None, "principal", "validated", 1500)
        for _ in range(count):
            uid += 1
            status = rng.choice(statuses)
            users.append(user(uid, "pending" if rng.random() < 0.03 else "active"))
            role = "secondary" if rng.random() < 0.05 else "simple"
            days = 1 + rng.randrange(1500)
            svcs = services_of[sid]
            chosen = rng.sample(svcs, 1 + (rng.random() < 0.3)) if rng.random() < 0.25 else [None]
            for svc in chosen:
                attach(uid, sid, svc, role, status, days)
            if sid != 1:
                continue
            if status == "pending":
                att_requests.append(
                    {
                        "id": len(att_requests) + 1,
                        "user_id": uid,
                        "structure_id": sid,
                        "whole_structure": chosen == [None],
                        "comment": "Please",
                        "status": "pending",
                        "role": None,
                        "reason": None,
                        "created_at": now - dt.timedelta(days=days),
                        "processed_at": None,
                        "processed_by_id": None,
                    }
                )
                entry(sid, uid, "attachment_request.created", uid, days)
            else:
                entry(sid, 1, "attachment.created", uid, days)
            if status == "validated" and rng.random() < 0.6:
                for code in rng.sample(spaces, min(len(spaces), 1 + rng.randrange(3))):
                    subscriptions.append(
                        {
                            "id": len(subscriptions) + 1,
                            "user_id": uid,
                            "structure_id": sid,
                            "service_id": None,
                            "space_code": code,
                            "level": rng.choice(["consult", "modify"]),
                            "status": "validated",
                            "created_at": now,
                            "updated_at": now,
                            "granted_by_id": 1,
                        }
                    )
                    entry(sid, 1, "subscription.granted", uid, days)
                if rng.random() < 0.03:  # a pending subscription request
                    rid = len(sub_requests) + 1
                    sub_requests.append(
                        {
                            "id": rid,
                            "user_id": uid,
                            "structure_id": sid,
                            "comment": None,
                            "origin": "manual",
                            "status": "pending",
                            "manager_comment": None,
                            "reason": None,
                            "created_at": now - dt.timedelta(days=rng.randrange(30)),
                            "processed_at": None,
                            "processed_by_id": None,
                        }
                    )
                    sub_lines.append(
                        {
                            "request_id": rid,
                            "space_code": rng.choice(spaces),
                            "service_id": None,
                            "level": "consult",
                        }
                    )
    with rt.engine.begin() as conn:
        for model, rows in (
            (User, users),
            (Structure, structures),
            (Service, services),
            (OpenedSpace, opened),
            (Attachment, attachments),
            (Subscription, subscriptions),
            (AttachmentRequest, att_requests),
            (SubscriptionRequest, sub_requests),
            (SubscriptionRequestLine, sub_lines),
            (HistoryEntry, history),
        ):
            _insert(conn, model, rows)
        if conn.dialect.name == "postgresql":
            for table in (
                "users",
                "structures",
                "services",
                "attachments",
                "subscriptions",
                "attachment_requests",
                "subscription_requests",
                "subscription_request_lines",
                "history_entries",
            ):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                    f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                )
    with rt.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")
    member = next(u for u in users[1:] if u["id"] > 1)
    homonym = users[len(users) // 2]
    return {
        "structure_id": 1,
        "member_id": member["id"],
        "candidate_names": (homonym["last_name"], homonym["first_name"]),
        "candidate_email": users[-1]["login_email"],
        "rows": {
            "users": len(users),
            "attachments": len(attachments),
            "subscriptions": len(subscriptions),
            "attachment_requests": len(att_requests),
            "subscription_requests": len(sub_requests),
            "history_entries": len(history),
        },
    }


DOMAINS = ["example.org", "mairie.example.fr", "bench.example", "corp.example.com"]


def operations(world: dict) -> list[tuple[str, str]]:
    sid, member = world["structure_id"], world["member_id"]
    last, first = world["candidate_names"]
    return [
        ("structure users, page 1", f"/v1/structures/{sid}/users"),
        ("structure users, page 150", f"/v1/structures/{sid}/users?page=150"),
        ("structure users, pending", f"/v1/structures/{sid}/users?status=pending"),
        ("search last_name 'mar'", "/v1/users?last_name=mar"),
        ("search first_name 'hél'", "/v1/users?first_name=h%C3%A9l"),
        ("search login_email 'dupont'", "/v1/users?login_email=dupont"),
        ("search login_email '123'", "/v1/users?login_email=123"),
        ("search service 'north'", "/v1/users?service=north"),
        ("search last_name + status", "/v1/users?last_name=robert&status=active"),
        ("search, page 20", "/v1/users?status=active&page=20"),
        (
            "attachment requests pending",
            f"/v1/attachment-requests?structure_id={sid}&status=pending",
        ),
        (
            "subscription requests pending",
            f"/v1/subscription-requests?structure_id={sid}&status=pending",
        ),
        ("history, page 1", f"/v1/structures/{sid}/history"),
        ("history, page 100", f"/v1/structures/{sid}/history?page=100"),
        ("history of one user", f"/v1/structures/{sid}/history?user_id={member}"),
        ("history, action prefix", f"/v1/structures/{sid}/history?action=subscription."),
        (
            "candidates by names",
            f"/v1/structures/{sid}/candidates?last_name={last}&first_name={first}",
        ),
        (
            "candidates by login email",
            f"/v1/structures/{sid}/candidates?login_email={world['candidate_email']}",
        ),
    ]


def run(database_url: str, n_users: int, n: int, log=print) -> dict:
    settings = bench_settings(database_url, "managers")
    engine = make_engine(load_settings(settings))
    upgrade(engine)
    with Session(engine) as session, session.begin():
        sync_space_catalogue(session, load_policies(load_settings(settings).policy_dir))
    engine.dispose()
    app = create_app(settings)
    rt = app.extensions["authz"]
    t0 = time.perf_counter()
    world = build(rt, n_users)
    log(f"world written in {time.perf_counter() - t0:.1f} s: {world['rows']}")
    principal = world_principal_email(rt)
    with rt.sessions() as session:
        token, _ = accounts.log_in(
            session, rt, login_email=principal, password=PASSWORD, address="127.0.0.1"
        )
    # The candidates throttle (30 searches per caller per window) would answer
    # 429 after 30 requests: raised for this process only.
    candidates.CANDIDATE_SEARCHES = 10**9
    statements = [0]

    @event.listens_for(rt.engine, "before_cursor_execute")
    def _count(*_args):
        statements[0] += 1

    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    results = {}
    for name, path in operations(world):
        first = client.get(path, headers=headers)
        body = first.get_json()
        if first.status_code != 200:
            raise SystemExit(f"{name}: {path} answered {first.status_code}: {body}")
        size = body.get("total", len(body.get("candidates", body.get("items", []))))
        for _ in range(10):
            client.get(path, headers=headers)
        statements[0] = 0
        times = []
        for _ in range(n):
            start = time.perf_counter()
            client.get(path, headers=headers)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        results[name] = {
            "p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
            "max_ms": round(times[-1], 2),
            "sql_per_request": round(statements[0] / n, 1),
            "answer_total": size,
        }
        r = results[name]
        mark = "" if r["p99_ms"] <= TARGET_P99_MS else "  MISS"
        log(
            f"{name:32} p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
            f"max {r['max_ms']:7.2f}  sql/req {r['sql_per_request']:5.1f}  "
            f"total {size}{mark}"
        )
    close_runtime(rt)
    return {"world": world["rows"], "operations": results}


def world_principal_email(rt) -> str:
    with rt.sessions() as session:
        return session.get_one(User, 1).login_email


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=200, help="timed requests per operation")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)
    url = args.database_url
    if url and not url.startswith("sqlite"):
        reset_database(url)
    elif not url:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench-managers-')) / 'authz.db'}"

    def log(msg: str) -> None:
        print(msg, flush=True)

    logging.disable(logging.INFO)  # the request and candidate-search log lines
    before = os.getloadavg()
    log(f"backend {url.split(':', 1)[0]}, {args.users:,} users, {args.n} requests per operation")
    log(f"load average before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}")
    result = run(url, args.users, args.n, log)
    after = os.getloadavg()
    log(f"load average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    misses = [k for k, v in result["operations"].items() if v["p99_ms"] > TARGET_P99_MS]
    log(f"target p99 <= {TARGET_P99_MS:.0f} ms: " + (f"missed by {misses}" if misses else "met"))
    if args.json:
        print(json.dumps({**result, "loadavg": [before, after]}), file=sys.stdout)


if __name__ == "__main__":
    main()
