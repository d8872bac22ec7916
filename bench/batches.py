"""Batches through the whole request path, in process (issue 13: batches of
1000 and AuthZEN evaluations).

    .venv/bin/python -m bench.batches [--reps 3] [--requests 30] [--size 1000]

POST /v1/checks/batch and POST /access/v1/evaluations through Flask's test
client (authentication, body parsing, the decisions, the JSON answer), with the
same questions in both forms, on a small world in a fresh SQLite database.
The two run interleaved (native, AuthZEN, native, ...) `--reps` times; each
figure is the median of the repetitions, with its range and the load average.
Only uses what every release has, so that an older checkout can run it for a
before/after comparison in one sitting (docs/performance.md, "Issue 13").
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from authz.review.fixtures import load_world
from authz.runtime import close_runtime
from authz.workflows.clients import create_client
from bench.app import bench_settings, migrated_app

SPACES = ("my_account", "manager_activities", "issued_invoices", "invoices_to_validate")
ACTIONS = ("consult", "modify", "create")
ROLES = ("secondary", "simple")


def world(structures: int, users: int) -> dict[str, Any]:
    rng = random.Random(13)
    return {
        "structures": {
            f"s{i}": {"kind": "private", "opened": ["invoices_to_validate"] if i % 2 else []}
            for i in range(structures)
        },
        "users": {f"u{i}": {"status": "active"} for i in range(users)},
        "attachments": [
            {
                "user": f"u{u}",
                "structure": f"s{s}",
                "role": ROLES[(u + s) % len(ROLES)],
                "valid_from": -30,
            }
            for u in range(users)
            for s in rng.sample(range(structures), 3)
        ],
    }


def questions(ids: Any, attachments: list[dict[str, Any]], n: int, seed: int) -> list[dict]:
    """`n` questions, most about a structure the user is attached to."""
    rng = random.Random(seed)
    structures = list(ids.structures.values())
    out = []
    for _ in range(n):
        pair = rng.choice(attachments)
        user_id = ids.users[pair["user"]]
        structure_id = ids.structures[pair["structure"]]
        if rng.random() < 0.2:
            structure_id = rng.choice(structures)
        if rng.random() < 0.2:
            space, action = None, rng.choice(("structure.view", "users.manage"))
        else:
            space, action = rng.choice(SPACES), rng.choice(ACTIONS)
        out.append(
            {"user_id": user_id, "structure_id": structure_id, "space": space, "action": action}
        )
    return out


def native_body(qs: list[dict[str, Any]]) -> str:
    return json.dumps({"checks": qs})


def authzen_body(qs: list[dict[str, Any]]) -> str:
    def item(q: dict[str, Any]) -> dict[str, Any]:
        if q["space"] is None:
            resource = {"type": "structure", "id": str(q["structure_id"])}
        else:
            resource = {"type": "space", "id": f"{q['structure_id']}/{q['space']}"}
        return {
            "subject": {"type": "user", "id": str(q["user_id"])},
            "action": {"name": q["action"]},
            "resource": resource,
        }

    return json.dumps({"evaluations": [item(q) for q in qs]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--requests", type=int, default=30, help="requests per repetition")
    parser.add_argument("--size", type=int, default=1000, help="questions per request")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile each form once instead of timing"
    )
    args = parser.parse_args()
    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'authz.db'}"
    app = migrated_app(bench_settings(url, "batches", log_level="WARNING"))
    rt = app.extensions["authz"]
    with rt.sessions() as session:
        spec = world(50, 200)
        ids = load_world(session, spec)
        session.commit()
        _, key = create_client(session, rt, "bench")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    client = app.test_client()
    asked = [questions(ids, spec["attachments"], args.size, seed) for seed in range(args.requests)]
    forms = {
        "native": ("/v1/checks/batch", [native_body(q) for q in asked], "decisions"),
        "authzen": ("/access/v1/evaluations", [authzen_body(q) for q in asked], "evaluations"),
    }
    # Warm up, and check both forms give the same decisions.
    answers = {}
    for name, (path, bodies, member) in forms.items():
        got = client.post(path, data=bodies[0], headers=headers)
        if got.status_code != 200:
            raise SystemExit(f"{name}: {path} answered {got.status_code}: {got.data[:300]!r}")
        answers[name] = [d["allowed" if name == "native" else "decision"] for d in got.json[member]]
    if answers["native"] != answers["authzen"]:
        raise SystemExit("native and AuthZEN answers differ")
    allowed = sum(answers["native"])
    if args.profile:
        for name, (path, bodies, _member) in forms.items():
            profiler = cProfile.Profile()
            profiler.enable()
            for body in bodies:
                client.post(path, data=body, headers=headers)
            profiler.disable()
            print(f"--- {name}")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    # checks per CPU second of this process (the machine is shared: wall-clock
    # rates carry the other processes' load), and per wall-clock second.
    rates: dict[str, list[float]] = {name: [] for name in forms}
    walls: dict[str, list[float]] = {name: [] for name in forms}
    loads = []
    for _ in range(args.reps):
        loads.append(os.getloadavg()[0])
        for name, (path, bodies, _member) in forms.items():
            cpu, wall = time.process_time(), time.perf_counter()
            for body in bodies:
                client.post(path, data=body, headers=headers)
            checks = len(bodies) * args.size
            rates[name].append(checks / (time.process_time() - cpu))
            walls[name].append(checks / (time.perf_counter() - wall))
    close_runtime(rt)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name, r in rates.items():
        print(
            f"{name:8} checks per CPU second: median {medians[name]:,.0f} "
            f"[{min(r):,.0f} .. {max(r):,.0f}] ({args.reps} reps); wall clock "
            f"{statistics.median(walls[name]):,.0f}/s"
        )
    ratios = [a / n for a, n in zip(rates["authzen"], rates["native"], strict=True)]
    print(
        f"AuthZEN / native: {medians['authzen'] / medians['native']:.2f} "
        f"(per repetition {', '.join(f'{x:.2f}' for x in ratios)}); "
        f"{allowed}/{args.size} allowed in the first batch; "
        f"load average {', '.join(f'{x:.1f}' for x in loads)}"
    )
    print(json.dumps({"medians": medians, "rates": rates, "walls": walls, "loadavg": loads}))


if __name__ == "__main__":
    main()
