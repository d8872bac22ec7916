"""Memory of a worker against the number of grants (docs/operations.md, "Sizing").

For each size, a generated world (bench/world.py, cached under var/bench/) is
loaded by a fresh process the way a worker loads it (build_runtime, then the
decision index); the process's RSS is read before and after.

    .venv/bin/python -m bench.sizing                     # 10k, 100k, 300k grants
    .venv/bin/python -m bench.sizing --grants 1000000    # one size (slower)

Each size runs in a child process, so that one size's memory does not count in
the next. A few minutes of machine time in all at the default sizes.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

from authz.config import load_settings
from authz.runtime import build_runtime, close_runtime
from bench.world import WorldSize, ensure_world

# Users and structures grow with the grants, in the proportions of the full
# benchmark (100,000 users, 10,000 structures, 1,000,000 grants).
DEFAULT_GRANTS = (10_000, 100_000, 300_000)


def rss_mb() -> float:
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def world(grants: int):
    size = WorldSize(users=max(grants // 10, 100), structures=max(grants // 100, 10), grants=grants)
    return ensure_world(size)


def measure(grants: int) -> dict:
    """In this process: a runtime on the (cached) world of `grants`, and its index."""
    generated = world(grants)
    gc.collect()
    rt = build_runtime(load_settings({"database_url": generated.url, "mail_background": False}))
    rt.decider.current_policy()
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    rt.decider.load()
    seconds = time.perf_counter() - started
    gc.collect()
    after = rss_mb()
    index = rt.decider.index
    held = sum(len(m.subscriptions) for m in index.memberships.values())
    close_runtime(rt)
    return {
        "grants": grants,
        "validated_grants": held,
        "memberships": len(index.memberships),
        "load_seconds": round(seconds, 2),
        "rss_before_mb": round(before),
        "rss_after_mb": round(after),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grants", type=int, action="append", help="a size (repeatable)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child's size
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        world(args.generate)  # in a process of its own: its memory is not measured
        return
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    print("grants     validated  memberships  load      RSS before  RSS after  per grant")
    for grants in args.grants or DEFAULT_GRANTS:
        subprocess.run(
            [sys.executable, "-m", "bench.sizing", "--generate", str(grants)], check=True
        )
        out = subprocess.run(
            [sys.executable, "-m", "bench.sizing", "--one", str(grants)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        per = (r["rss_after_mb"] - r["rss_before_mb"]) * 1e6 / max(1, r["validated_grants"])
        print(
            f"{r['grants']:<10,} {r['validated_grants']:<10,} {r['memberships']:<12,} "
            f"{r['load_seconds']:<9} {r['rss_before_mb']:<11} {r['rss_after_mb']:<10} "
            f"{per:.0f} B"
        )


if __name__ == "__main__":
    main()
