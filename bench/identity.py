"""Authentication's share of a check, in process (issue 13, item 1).

    .venv/bin/python -m bench.identity [--backend sqlite|postgresql] [--n 3000]

Runs POST /v1/checks through Flask's test client — authentication, argument
parsing, the decision, the response — with an API key and with a person's
bearer token, on a small world in a fresh database, and prints checks/s and
the process's CPU per check. Only uses what every release has, so that it can
be run with an older checkout's interpreter for a before/after comparison in
one sitting (docs/performance.md, "Identity cache").
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, make_url

from authz.review.fixtures import load_world
from authz.runtime import close_runtime
from authz.workflows import accounts
from authz.workflows.clients import create_client
from bench.app import bench_settings, migrated_app
from models import User

WORLD = {
    "structures": {"acme": {"kind": "private", "opened": ["issued_invoices"]}},
    "users": {"alice": {"status": "active", "login_email": "alice@example.org"}},
    "attachments": [{"user": "alice", "structure": "acme", "role": "principal", "valid_from": -30}],
}
PASSWORD = "Bench-identity-1"  # noqa: S105 - a throw-away account


def run(database_url: str, n: int) -> dict[str, float]:
    app = migrated_app(bench_settings(database_url, "identity"))
    rt = app.extensions["authz"]
    with rt.sessions() as session:
        ids = load_world(session, WORLD)
        session.get(User, ids.users["alice"]).password_hash = rt.hasher.hash(PASSWORD)
        session.commit()
        _, key = create_client(session, rt, "bench")
    with rt.sessions() as session:
        token, _ = accounts.log_in(
            session, rt, login_email="alice@example.org", password=PASSWORD, address="127.0.0.1"
        )
    body = json.dumps(
        {
            "user_id": ids.users["alice"],
            "structure_id": ids.structures["acme"],
            "space": "issued_invoices",
            "action": "consult",
        }
    )
    client = app.test_client()
    out: dict[str, float] = {}
    for name, credential in (("api key", key), ("bearer token", token)):
        headers = {"Authorization": f"Bearer {credential}", "Content-Type": "application/json"}
        for _ in range(200):  # warm up
            status = client.post("/v1/checks", data=body, headers=headers).status_code
            if status != 200:
                raise SystemExit(f"{name}: a check answered {status}")
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            client.post("/v1/checks", data=body, headers=headers)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        out[f"{name} checks/s"] = n / wall
        out[f"{name} CPU us/check"] = cpu / n * 1e6
    close_runtime(rt)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    if args.backend == "sqlite":
        url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'authz.db'}"
        result = run(url, args.n)
    else:
        base = os.environ["AUTHZ_BENCH_POSTGRES_URL"]
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(base)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
            result = run(url.render_as_string(hide_password=False), args.n)
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()
    print(json.dumps({**result, "loadavg": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
