#!/usr/bin/env bash
# The suite on SQLite, then - when AUTHZ_TEST_POSTGRES_URL is set - on PostgreSQL.
# `make test` runs this after the lint; PYTEST is the venv's pytest, extra
# arguments go to both passes.
#
# The two passes share nothing: each has its own database (a temporary SQLite
# file per test; the PostgreSQL database of the URL) and its own range of ports
# for the servers the tests start (AUTHZ_TEST_PORTS, tests/support/live.py).
# So, on a machine with two cores or more, they run side by side and each
# pass's whole output is printed when it ends (followed live with
# `tail -f var/test-logs/*.log`). AUTHZ_TEST_PASSES=serial runs them one after
# the other, printing as they go. Why: docs/decisions.md, "CI time".
#
# Exit status: non-zero if either pass failed; each pass runs whatever the other did.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTEST="${PYTEST:-.venv/bin/pytest}"
SQLITE_PORTS="${AUTHZ_TEST_SQLITE_PORTS:-18400-18499}"
PG_PORTS="${AUTHZ_TEST_PG_PORTS:-18500-18599}"
PG_URL="${AUTHZ_TEST_POSTGRES_URL:-}"
shown=$(printf '%s' "$PG_URL" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#')

sqlite_pass() { env -u AUTHZ_TEST_POSTGRES_URL AUTHZ_TEST_PORTS="$SQLITE_PORTS" "$PYTEST" "$@"; }
pg_pass()     { AUTHZ_TEST_PORTS="$PG_PORTS" "$PYTEST" "$@"; }

mode="${AUTHZ_TEST_PASSES:-}"
if [ -z "$mode" ]; then
    mode=serial
    if [ -n "$PG_URL" ] && [ "$(nproc 2>/dev/null || echo 1)" -ge 2 ]; then mode=parallel; fi
fi

sqlite_rc=0 pg_rc=0
if [ -z "$PG_URL" ]; then
    echo "==> pytest on SQLite"
    sqlite_pass "$@" || sqlite_rc=$?
    echo "==> PostgreSQL run skipped: AUTHZ_TEST_POSTGRES_URL is not set"
    echo "==> SQLite: exit $sqlite_rc"
    exit "$sqlite_rc"
fi

if [ "$mode" = serial ]; then
    echo "==> pytest on SQLite (AUTHZ_TEST_POSTGRES_URL unset for this run)"
    sqlite_pass "$@" || sqlite_rc=$?
    echo "==> pytest on PostgreSQL (AUTHZ_TEST_POSTGRES_URL=$shown)"
    pg_pass "$@" || pg_rc=$?
else
    logs=var/test-logs
    mkdir -p "$logs"
    echo "==> pytest on SQLite and on PostgreSQL ($shown) side by side; logs in $logs/"
    start=$(date +%s)
    sqlite_pass "$@" >"$logs/sqlite.log" 2>&1 &
    sqlite_pid=$!
    pg_pass "$@" >"$logs/postgresql.log" 2>&1 &
    pg_pid=$!
    # Ctrl-C or a CI timeout stops both passes, not only this script.
    trap 'kill "$sqlite_pid" "$pg_pid" 2>/dev/null; exit 130' INT TERM
    wait "$sqlite_pid" || sqlite_rc=$?
    echo "==> pytest on SQLite (AUTHZ_TEST_POSTGRES_URL unset), ended after $(($(date +%s) - start)) s:"
    cat "$logs/sqlite.log"
    wait "$pg_pid" || pg_rc=$?
    echo "==> pytest on PostgreSQL (AUTHZ_TEST_POSTGRES_URL=$shown), ended after $(($(date +%s) - start)) s:"
    cat "$logs/postgresql.log"
fi
echo "==> SQLite: exit $sqlite_rc, PostgreSQL: exit $pg_rc"
[ "$sqlite_rc" -eq 0 ] && [ "$pg_rc" -eq 0 ]
