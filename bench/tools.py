"""The security team's tools at scale, timed as a reviewer runs them (issue 13).

    .venv/bin/python -m bench.tools --grants 100000      # about 10k structures
    .venv/bin/python -m bench.tools --grants 1000000     # the issue's size

On a copy of the generated world (bench/world.py, cached under var/bench/),
each command is run as installed - a new `authz` process, settings from the
environment - and timed from start to exit, `--repeat` times (median and
range printed, with the load average before each run):

- `authz review --format json`: the review report of every structure;
- `authz export rights --output FILE`: the effective-rights export, with its
  rows per second (the file's lines);
- `authz policy diff OLD NEW`: OLD is policies/, NEW a copy where a modify
  level no longer allows creation on an active structure, so that many
  decisions change.

The issue's targets at 1,000,000 grants: review <= 15 s, export >= 100k rows/s,
diff <= 30 s. Each process's time includes its start-up and the index load
(mapping the machine's snapshot). The very first command on the copy builds
that snapshot, as the service's first start on a machine does: it is run and
printed apart ("first command"), before the timed runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from authz.config import ROOT
from bench.world import WorldSize, ensure_world


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def _authz() -> str:
    found = shutil.which("authz", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("the `authz` command is not installed beside this Python")
    return found


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    load = _load()
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds, load


def _summary(name: str, seconds: list[float], loads: list[str], extra: str = "") -> str:
    median = statistics.median(seconds)
    spread = f"{min(seconds):.1f}-{max(seconds):.1f}"
    return f"{name:<28} {median:8.1f} s  (range {spread} s){extra}   [{'; '.join(loads)}]"


def _changed_policies(directory: Path) -> Path:
    """policies/ with creation no longer allowed by the modify level."""
    target = directory / "policies-new"
    shutil.copytree(ROOT / "policies", target, ignore=shutil.ignore_patterns("tests"))
    levels = target / "levels.csv"
    text = levels.read_text(encoding="utf-8")
    line = "p2, modify, create, active\n"
    if line not in text:
        raise SystemExit(f"{levels}: no line {line.strip()!r} to remove")
    levels.write_text(text.replace(line, ""), encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    size = WorldSize(
        users=max(args.grants // 10, 100),
        structures=max(args.grants // 100, 10),
        grants=args.grants,
    )
    world = ensure_world(size, log=lambda msg: print(f"  {msg}", flush=True))
    if world.path is None:
        raise SystemExit("a SQLite world was expected")
    print(f"world: {size.stem} ({'cached' if world.cached else f'{world.seconds:.0f} s'})")
    authz = _authz()
    with tempfile.TemporaryDirectory(prefix="authz-bench-tools-") as tmp:
        directory = Path(tmp)
        copy = directory / "authz.db"
        shutil.copy(world.path, copy)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
        env |= {"AUTHZ_DATABASE_URL": f"sqlite:///{copy}", "AUTHZ_VAR_DIR": str(directory)}
        changed = _changed_policies(directory)
        export = directory / "rights.csv"
        # The first command on a machine builds the index snapshot every later
        # one maps (as the service's first start does): timed apart, since a
        # reviewer's machine running the service already has it.
        first, load = _timed([authz, "review", "--format", "json", "--output", os.devnull], env)
        runs: dict[str, tuple[list[float], list[str]]] = {}
        rows = 0
        for _ in range(args.repeat):
            for name, command in (
                ("review (json)", [authz, "review", "--format", "json", "--output", os.devnull]),
                ("export rights (csv)", [authz, "export", "rights", "--output", str(export)]),
                ("policy diff", [authz, "policy", "diff", str(ROOT / "policies"), str(changed)]),
            ):
                seconds, load = _timed(command, env)
                runs.setdefault(name, ([], []))[0].append(seconds)
                runs[name][1].append(load)
                if name.startswith("export"):
                    with export.open(encoding="utf-8") as f:
                        rows = sum(1 for _ in f) - 1
        print(f"grants: {args.grants:,}, runs: {args.repeat}, cores: {os.cpu_count()}")
        print(_summary("first command (+ snapshot)", [first], [load]))
        for name, (seconds, loads) in runs.items():
            extra = ""
            if name.startswith("export"):
                extra = f", {rows:,} rows, {rows / statistics.median(seconds):,.0f} rows/s"
            print(_summary(name, seconds, loads, extra))


if __name__ == "__main__":
    main()
