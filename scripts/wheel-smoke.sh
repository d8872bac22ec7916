#!/usr/bin/env bash
# Wheel smoke test: what the image runs, without Docker.
#
# Its steps are the Dockerfile's (there is no Docker engine on the machines
# that run CI): build the wheel from the same sources, install THAT wheel into
# a fresh virtual environment, then from a folder outside the checkout run the
# release step and the service as the image and compose.yaml do. Each step is
# marked "image:" with its Dockerfile counterpart; change one, change the other
# (tests/test_image.py checks the parts that can drift).
#
#   bash scripts/wheel-smoke.sh          # CI runs it after `make test`
#
# Knobs: PYTHON (default python3), SMOKE_PORT (default: a free port in
# 18100-18199), SMOKE_DATABASE_URL (default: a SQLite file in the temporary
# folder, as the image's default), SMOKE_KEEP=1 keeps the temporary folder.
# Ends with a line "smoke: N passed, 0 failed", or exits non-zero at the first
# failed step.
set -euo pipefail

CHECKOUT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/authz-smoke.XXXXXX")"
SERVER_PID=""
PASSED=0

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "${SMOKE_KEEP:-0}" = 1 ]; then
        echo "smoke: kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

step() { printf -- '--> %s\n' "$*"; }
pass() { PASSED=$((PASSED + 1)); printf '    ok: %s\n' "$*"; }
fail() { printf 'smoke: FAILED: %s\n' "$*" >&2; exit 1; }

# The sources of the wheel: exactly what the Dockerfile's build stage COPYs.
SOURCES=(pyproject.toml setup.py MANIFEST.in README.md alembic.ini api authz cli models migrations policies)

# ---------------------------------------------------------------------------
# image: build stage, COPY the sources, then `pip wheel --no-deps`
step "build the wheel from a copy of the sources (${SOURCES[*]})"
mkdir "$WORK/src"
(cd "$CHECKOUT" && cp -R "${SOURCES[@]}" "$WORK/src/")
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m venv "$WORK/build"
"$WORK/build/bin/pip" wheel --quiet --disable-pip-version-check --no-deps \
    --wheel-dir "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/authz_service-*.whl)"
pass "built $(basename "$WHEEL")"

# image: runtime stage, a fresh venv with the wheel (and its dependencies) only
step "install the wheel into a fresh virtual environment"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet --disable-pip-version-check "$WHEEL"
pass "installed"

# image: ENV AUTHZ_VAR_DIR / AUTHZ_BIND / AUTHZ_WORKERS / AUTHZ_THREADS, WORKDIR
# outside the checkout; nothing else of the caller's AUTHZ_* or gunicorn settings.
for variable in $(compgen -e); do
    case "$variable" in AUTHZ_* | GUNICORN_CMD_ARGS) unset "$variable" ;; esac
done
if [ -z "${SMOKE_PORT:-}" ]; then
    SMOKE_PORT="$("$WORK/venv/bin/python" - <<'EOF'
import socket
for port in range(18100, 18200):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
EOF
)"
    [ -n "$SMOKE_PORT" ] || fail "no free port in 18100-18199"
fi
BASE="http://127.0.0.1:$SMOKE_PORT"
export AUTHZ_VAR_DIR="$WORK/var"
export AUTHZ_BIND="127.0.0.1:$SMOKE_PORT" AUTHZ_WORKERS=2 AUTHZ_THREADS=4
export AUTHZ_MAIL_BACKGROUND=false
if [ -n "${SMOKE_DATABASE_URL:-}" ]; then export AUTHZ_DATABASE_URL="$SMOKE_DATABASE_URL"; fi
export PATH="$WORK/venv/bin:$PATH"
mkdir "$WORK/run"
cd "$WORK/run"
case "$(command -v authz)" in "$WORK/venv/bin/authz") ;; *) fail "authz is not the installed one" ;; esac

# image: CMD ["serve"] never migrates: on an empty database it refuses to start
step "authz serve refuses an unmigrated database (it never migrates)"
if authz serve >"$WORK/refused.log" 2>&1; then fail "authz serve started on an empty database"; fi
grep -q 'run `authz db upgrade` first' "$WORK/refused.log" || fail "$(cat "$WORK/refused.log")"
pass "refused: $(tail -n 1 "$WORK/refused.log")"

# compose.yaml: the one-off `migrate` service (a release step / init container)
step "authz db upgrade"
authz db upgrade
pass "migrated"

step "authz demo"
authz demo >"$WORK/demo.log"
grep -q "claire.martin@boulangerie-martin.example" "$WORK/demo.log" || fail "demo log-ins missing"
pass "demo data loaded"

step "authz clients create smoke"
KEY="$(authz clients create smoke 2>/dev/null | tail -n 1)"
case "$KEY" in ak_*) ;; *) fail "no API key printed" ;; esac
authz export rights --format json --output "$WORK/rights.json" 2>/dev/null
pass "client key created"

# image: ENTRYPOINT ["authz"], CMD ["serve"]: the gunicorn master is the process started
step "authz serve in the background on $BASE"
authz serve >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!

export SMOKE_BASE="$BASE" SMOKE_KEY="$KEY" SMOKE_PID="$SERVER_PID" SMOKE_RIGHTS="$WORK/rights.json"
python - <<'EOF' || { cat "$WORK/serve.log" >&2; fail "the running service"; }
"""Checks on the running service, as a client application would make them."""
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

base, key, pid = os.environ["SMOKE_BASE"], os.environ["SMOKE_KEY"], os.environ["SMOKE_PID"]


def call(method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method)
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


deadline = time.monotonic() + 60
while True:
    try:
        if call("GET", "/health/ready")[0] == 200:
            break
    except OSError:
        pass
    assert Path(f"/proc/{pid}").exists(), "authz serve exited"
    assert time.monotonic() < deadline, "not ready within 60 s"
    time.sleep(0.3)
print("    ok: /health/ready answers 200")

workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
assert len(workers) == 2, f"AUTHZ_WORKERS=2 but {len(workers)} workers"
print(f"    ok: the started process is the gunicorn master, with {len(workers)} workers")

status, meta = call("GET", "/.well-known/authzen-configuration")
assert status == 200 and meta["policy_decision_point"] == base, meta
print(f"    ok: AuthZEN discovery names {base}")

rights = json.loads(Path(os.environ["SMOKE_RIGHTS"]).read_text())
held = next(r for r in rights if r["source"].startswith("subscription"))
question = {
    "user_id": held["user_id"],
    "structure_id": held["structure_id"],
    "service": held["service"] or None,
    "space": held["space"],
    "action": held["level"],
}
status, decision = call("POST", "/v1/checks", question, key)
assert status == 200 and decision["allowed"] is True, (status, decision)
other = next(r for r in rights if r["structure_id"] != held["structure_id"])
denied = {**question, "structure_id": other["structure_id"], "service": None}
if not any(r["user_id"] == held["user_id"] and r["structure_id"] == other["structure_id"] for r in rights):
    status, decision = call("POST", "/v1/checks", denied, key)
    assert status == 200 and decision["allowed"] is False, (status, decision)
status, problem = call("POST", "/v1/checks", question, key[:-2] + "xx")
assert status == 401, (status, problem)
print("    ok: decisions with the client key (allowed, denied), a wrong key refused")
EOF
PASSED=$((PASSED + 4))

step "authz policy test"
authz policy test >"$WORK/policy-test.log" || { cat "$WORK/policy-test.log"; fail "policy test"; }
grep -q "^PASS  $WORK/venv/.*/authz/_shipped/policies/tests/" "$WORK/policy-test.log" \
    || fail "the assertion files are not the ones shipped in the wheel"
pass "$(grep -c '^PASS ' "$WORK/policy-test.log") assertion file(s) passed, from the shipped policies"

step "authz review"
authz review --format json --output "$WORK/review.json"
python -c 'import json, sys; json.load(open(sys.argv[1]))' "$WORK/review.json"
pass "review report written"

# image: docker stop sends SIGTERM to PID 1, the gunicorn master
step "stop the service with SIGTERM"
kill -TERM "$SERVER_PID"
status=0
wait "$SERVER_PID" || status=$?
SERVER_PID=""
[ "$status" = 0 ] || fail "authz serve exited $status on SIGTERM"
pass "stopped cleanly"

echo "smoke: $PASSED passed, 0 failed"
