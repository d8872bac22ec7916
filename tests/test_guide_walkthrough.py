"""docs/manager-guide.md runs as written: its ```sh walkthrough blocks, in
order, with bash, against a real `authz serve` on a fresh `authz db upgrade &&
authz demo` database (SQLite: the walk-through is backend-independent).

Every curl call of the walk-through is followed, before the next one, by a
comment giving the HTTP status it answers (`# 200 {...}`, `# 409 {...}`): the
test checks each one. A call whose status the doc does not state is a doc
error, so is an answer ≥ 500 anywhere (the log-ins included)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.backend import POSTGRES_URL
from tests.support.live import authz_command, serve_env, serving

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "manager-guide.md"
BLOCK = re.compile(r"^```sh walkthrough\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# A line that starts a curl call: `curl …`, or `NAME=$(curl …`, unindented
# (the curl of a function such as `login` runs when the function is called).
CALL = re.compile(r"^(?:\w+=\$\()?curl\b")
# The status a call answers: a comment line starting with three digits.
STATUS = re.compile(r"^#\s*(\d{3})\b")

# Every curl of the script goes through this: the body to stdout as curl
# would print it, the status appended to a log; `__expect` checks that the
# last call (and only one since the previous check) answered that status.
PRELUDE = r"""
__log="$WALK_DIR/statuses"; : > "$__log"; __seen=0
curl() {
  local body code
  body=$(mktemp)
  code=$(command curl "$@" -o "$body" -w '%{http_code}') || { echo "curl failed: $*" >&2; exit 2; }
  cat "$body"; rm -f "$body"
  local call="$*"
  echo "$code ${call//$'\n'/ }" >> "$__log"
}
__expect() {  # STATUS DOC_LINE
  local count last
  count=$(wc -l < "$__log")
  last=$(tail -n 1 "$__log")
  if [ "$count" -le "$__seen" ]; then
    echo "guide line $2: no call before this status" >&2; exit 1
  fi
  __seen=$count
  if [ "${last%% *}" != "$1" ]; then
    echo "guide line $2: expected $1, got: $last" >&2; exit 1
  fi
}
"""


def walkthrough() -> list[tuple[int, str]]:
    """(line number in the guide, line) of every walkthrough block, in order."""
    text = GUIDE.read_text(encoding="utf-8")
    lines: list[tuple[int, str]] = []
    for match in BLOCK.finditer(text):
        first = text.count("\n", 0, match.start(1)) + 1
        lines += [(first + i, line) for i, line in enumerate(match.group(1).splitlines())]
    return lines


def script(lines: list[tuple[int, str]]) -> str:
    """The walk-through with a status check after each status comment."""
    out = [PRELUDE]
    for number, line in lines:
        out.append(line)
        status = STATUS.match(line)
        if status:
            out.append(f"__expect {status.group(1)} {number}")
    return "\n".join(out) + "\n"


def test_every_walkthrough_call_states_its_status():
    lines = walkthrough()
    assert len(lines) > 50, "the walkthrough blocks were not found"
    unchecked = None
    for number, line in lines:
        if CALL.match(line):
            assert unchecked is None, f"guide line {unchecked}: no status stated for this call"
            unchecked = number
        elif STATUS.match(line):
            unchecked = None
    assert unchecked is None, f"guide line {unchecked}: no status stated for this call"


@pytest.mark.skipif(bool(POSTGRES_URL), reason="backend-independent: SQLite pass only")
def test_the_manager_guide_runs_as_written_on_a_fresh_demo(tmp_path):
    missing = [tool for tool in ("bash", "curl", "python3") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the walk-through needs {', '.join(missing)}")
    env = serve_env(f"sqlite:///{tmp_path / 'authz.db'}", tmp_path / "var")
    for command in (["db", "upgrade"], ["demo"]):
        done = subprocess.run(
            [authz_command(), *command],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    with serving(env, tmp_path / "serve.log", workers=1) as server:
        run = subprocess.run(
            ["bash", "-c", script(walkthrough())],
            env={**env, "WALK_DIR": str(tmp_path), "B": f"http://127.0.0.1:{server.port}"},
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    statuses = (tmp_path / "statuses").read_text(encoding="utf-8")
    assert run.returncode == 0, (
        f"{run.stderr}\n--- calls:\n{statuses}\n--- end of output:\n{run.stdout[-2000:]}"
    )
    failures = [line for line in statuses.splitlines() if line[:1] == "5"]
    assert not failures, failures
    assert len(statuses.splitlines()) > 30
