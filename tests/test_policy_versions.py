"""Policy versions (issue 11, item 7): `authz policy apply` runs the set's own
assertion tests and refuses it, changing nothing, if any fails; otherwise the
set is stored as a new version (who, when, sha256, files, decisions changed)
and every worker of every instance decides with it from the revision it was
applied at, without a restart. `authz policy history` / `rollback` / `show`;
`authz db upgrade` stores the first version.

The world and the assertion file are this module's own (a small policy set
built from the shipped files), so that the shipped policies/tests can change
without touching these tests.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import func, select, update

from authz.config import ROOT, load_settings
from authz.engine.decisions import Question
from authz.errors import Unavailable
from authz.review.fixtures import load_world
from authz.runtime import build_runtime, close_runtime
from authz.workflows.clients import create_client
from authz.workflows.records import bump_revision
from cli import main
from models import PolicyRevision, PolicyVersion, Space, Structure, User
from tests.support.backend import FAST_HASH, POSTGRES_URL
from tests.support.live import authz_command, postgres_schema, serve_env, serving

WORLD = {
    "structures": {
        "acme": {
            "kind": "private",
            "opened": ["issued_invoices", "manager_activities"],
            "services": {"sales": {"active": True}},
        }
    },
    "users": {
        "alice": {"status": "active", "login_email": "alice@example.org"},
        "sophie": {"status": "active", "login_email": "sophie@example.org"},
        "victor": {"status": "active", "login_email": "victor@example.org"},
    },
    "attachments": [
        {"user": "alice", "structure": "acme", "role": "principal", "valid_from": -30},
        {"user": "sophie", "structure": "acme", "role": "secondary", "valid_from": -30},
        {
            "user": "victor",
            "structure": "acme",
            "service": "sales",
            "role": "simple",
            "valid_from": -30,
        },
    ],
    "subscriptions": [
        {"user": "victor", "structure": "acme", "space": "issued_invoices", "level": "modify"}
    ],
}
# The secondary's line of roles.yaml, and the same without identifier.change.
SECONDARY = "attachments.create, attachments.delete,\n              identifier.change, history.read"
SECONDARY_CHANGED = "attachments.create, attachments.delete,\n              history.read"
PASSWORD = "correct horse battery staple"


def policy_set(folder: Path, *, secondary_changes_identifier: bool, expect: str) -> Path:
    """The shipped engine files, the secondary's right to change the identifier
    kept or removed, and one assertion file expecting `expect` for it."""
    shutil.copytree(ROOT / "policies", folder, ignore=shutil.ignore_patterns("tests"))
    roles = folder / "roles.yaml"
    text = roles.read_text(encoding="utf-8")
    assert text.count(SECONDARY) == 1, "roles.yaml changed: update SECONDARY"
    if not secondary_changes_identifier:
        roles.write_text(text.replace(SECONDARY, SECONDARY_CHANGED), encoding="utf-8")
    rows = [
        {"user": "alice", "structure": "acme", "action": "identifier.change", "expect": "allow"},
        {"user": "sophie", "structure": "acme", "action": "identifier.change", "expect": expect},
        {
            "user": "victor",
            "structure": "acme",
            "service": "sales",
            "space": "issued_invoices",
            "action": "modify",
            "expect": "allow",
        },
    ]
    for row in rows:
        row["why"] = "tests/test_policy_versions.py"
    (folder / "tests").mkdir()
    (folder / "tests" / "versions.yaml").write_text(
        yaml.safe_dump({"world": WORLD, "rows": rows}), encoding="utf-8"
    )
    return folder


def authz(env: dict[str, str], *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == code, (result.output, result.exception)
    return result


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh SQLite database, migrated by `authz db upgrade` (the first version)."""
    env = {
        "AUTHZ_DATABASE_URL": f"sqlite:///{tmp_path / 'authz.db'}",
        "AUTHZ_VAR_DIR": str(tmp_path / "var"),
        "AUTHZ_MAIL_BACKGROUND": "false",
        **{f"AUTHZ_{k.upper()}": str(v) for k, v in FAST_HASH.items()},
    }
    authz(env, "db", "upgrade")
    return env


@pytest.fixture
def rt(env):
    rt = build_runtime(load_settings(environ=env))
    with rt.sessions() as session:
        load_world(session, WORLD)
        session.commit()
    yield rt
    close_runtime(rt)


def ids(rt) -> tuple[int, int, int]:
    with rt.read_sessions() as s:
        users = {row.login_email: row.id for row in s.execute(select(User.login_email, User.id))}
        structure = s.scalar(select(Structure.id).where(Structure.identifier_value == "acme"))
    return users["sophie@example.org"], users["alice@example.org"], structure


def decide(rt, user_id: int, structure_id: int, action: str):
    with rt.decider.reading():
        return rt.decider.decide(Question(user_id, structure_id, None, action))


def state(rt) -> tuple[int, int | None, int]:
    """(revision, policy version in force, versions stored)."""
    with rt.read_sessions() as s:
        revision, version = s.execute(
            select(PolicyRevision.revision, PolicyRevision.policy_version)
        ).one()
        return revision, version, s.scalar(select(func.count()).select_from(PolicyVersion))


def test_db_upgrade_stores_the_files_as_version_1_once(env, tmp_path):
    again = authz(env, "db", "upgrade")
    assert "Policy version" not in again.output
    rt = build_runtime(load_settings(environ=env))
    try:
        with rt.read_sessions() as s:
            [first] = s.scalars(select(PolicyVersion)).all()
        assert (first.version, first.rollback_of, first.changes["count"]) == (1, None, 0)
        assert set(first.files) >= {"model.conf", "levels.csv", "roles.yaml", "spaces.yaml"}
        assert any(name.startswith("tests/") for name in first.files)
        assert state(rt)[1] == 1
    finally:
        close_runtime(rt)


def test_db_upgrade_refuses_files_whose_assertions_fail(tmp_path):
    broken = policy_set(tmp_path / "broken", secondary_changes_identifier=False, expect="allow")
    env = {
        "AUTHZ_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
        "AUTHZ_VAR_DIR": str(tmp_path / "var"),
        "AUTHZ_POLICY_DIR": str(broken),
    }
    result = authz(env, "db", "upgrade", code=1)
    assert "FAIL  tests/versions.yaml" in result.output
    assert "no policy version stored" in result.output


def test_apply_refuses_a_set_whose_assertions_fail_and_changes_nothing(env, rt, tmp_path):
    sophie, _, acme = ids(rt)
    before = state(rt)
    broken = policy_set(tmp_path / "broken", secondary_changes_identifier=False, expect="allow")
    result = authz(env, "policy", "apply", str(broken), code=1)
    assert "FAIL  tests/versions.yaml" in result.output
    assert "refused: its assertion tests fail; nothing changed." in result.output
    assert state(rt) == before
    decision = decide(rt, sophie, acme, "identifier.change")
    assert (decision.allowed, decision.policy_version) == (True, 1)


def test_apply_refuses_a_set_without_assertion_tests(env, rt, tmp_path):
    before = state(rt)
    bare = tmp_path / "bare"
    shutil.copytree(ROOT / "policies", bare, ignore=shutil.ignore_patterns("tests"))
    result = authz(env, "policy", "apply", str(bare), code=1)
    assert "refused: it has no assertion tests (tests/*.yaml); nothing changed." in result.output
    assert state(rt) == before


def test_an_applied_set_is_in_force_at_once_in_a_running_process(env, rt, tmp_path):
    sophie, alice, acme = ids(rt)
    assert decide(rt, sophie, acme, "identifier.change").allowed  # memoised under version 1
    assert rt.management.allows("secondary", "identifier.change", "active")
    revision_before = state(rt)[0]

    changed = policy_set(tmp_path / "v2", secondary_changes_identifier=False, expect="deny")
    result = authz(env, "policy", "apply", str(changed), "--actor", "rita")
    assert "sophie@example.org on acme: identifier.change: allow -> deny" in result.output
    assert "Policy version 2 applied" in result.output

    revision, version, stored = state(rt)
    assert (version, stored) == (2, 2) and revision == revision_before + 1
    denied = decide(rt, sophie, acme, "identifier.change")
    assert (denied.allowed, denied.revision, denied.policy_version) == (False, revision, 2)
    assert decide(rt, alice, acme, "identifier.change").allowed
    # The workflows follow too (the same process, no restart).
    assert not rt.management.allows("secondary", "identifier.change", "active")
    with rt.read_sessions() as s:
        row = s.get(PolicyVersion, 2)
    assert (row.applied_by, row.revision, row.changes["count"]) == ("rita", revision, 1)
    assert row.changes["decisions"] == [
        "sophie@example.org on acme: identifier.change: allow -> deny"
    ]
    assert row.files["roles.yaml"] == (changed / "roles.yaml").read_text(encoding="utf-8")
    assert row.source == f"authz policy apply {changed.resolve()}"

    # The same files again: nothing to do.
    again = authz(env, "policy", "apply", str(changed))
    assert "Policy version 2 in force has the same files" in again.output
    assert state(rt)[2] == 2


def test_history_and_rollback(env, rt, tmp_path):
    sophie, _, acme = ids(rt)
    changed = policy_set(tmp_path / "v2", secondary_changes_identifier=False, expect="deny")
    authz(env, "policy", "apply", str(changed))
    result = authz(env, "policy", "rollback", "1", "--actor", "rita")
    assert "sophie@example.org on acme: identifier.change: deny -> allow" in result.output
    assert "Policy version 3 applied" in result.output
    decision = decide(rt, sophie, acme, "identifier.change")
    assert (decision.allowed, decision.policy_version) == (True, 3)
    with rt.read_sessions() as s:
        first, third = s.get(PolicyVersion, 1), s.get(PolicyVersion, 3)
    assert (third.rollback_of, third.digest, third.applied_by) == (1, first.digest, "rita")

    lines = authz(env, "policy", "history").output.splitlines()
    assert lines[0].split()[:3] == ["version", "applied", "at"]
    assert [line.split()[0] for line in lines[2:]] == ["3", "2", "1"]
    assert lines[2].split()[1] == "*"
    assert "authz policy rollback 1" in lines[2]

    authz(env, "policy", "show", "2", str(tmp_path / "shown"))
    assert (tmp_path / "shown" / "roles.yaml").read_text(encoding="utf-8") == (
        changed / "roles.yaml"
    ).read_text(encoding="utf-8")
    refused = authz(env, "policy", "rollback", "9", code=1)
    assert refused.output == "error: No policy version 9.\n"


def test_a_stored_version_that_does_not_load_refuses_every_decision(env, rt, caplog):
    sophie, _, acme = ids(rt)
    assert decide(rt, sophie, acme, "identifier.change").allowed
    with rt.sessions.begin() as s:
        files = dict(s.get(PolicyVersion, 1).files, **{"model.conf": "[nonsense"})
        s.add(
            PolicyVersion(
                version=2,
                digest="0" * 64,
                files=files,
                applied_by="intruder",
                revision=99,
                source="by hand",
                changes={"count": 0, "decisions": []},
            )
        )
        s.execute(
            update(PolicyRevision).values(policy_version=2, revision=PolicyRevision.revision + 1)
        )
    with caplog.at_level(logging.ERROR, "authz.decisions"), pytest.raises(Unavailable) as refused:
        decide(rt, sophie, acme, "identifier.change")
    assert refused.value.code == "policy_version_unusable"


def test_files_that_differ_from_the_version_in_force_are_warned_about_and_not_used(
    env, rt, tmp_path, caplog
):
    sophie, _, acme = ids(rt)
    edited = policy_set(tmp_path / "edited", secondary_changes_identifier=False, expect="deny")
    other = build_runtime(load_settings(environ={**env, "AUTHZ_POLICY_DIR": str(edited)}))
    try:
        with caplog.at_level(logging.WARNING, "authz.decisions"):
            decision = decide(other, sophie, acme, "identifier.change")
        assert (decision.allowed, decision.policy_version) == (True, 1)  # the database wins
        assert "differ from policy version 1 in force" in caplog.text
    finally:
        close_runtime(other)


def test_the_space_catalogue_follows_the_version_in_force(env, rt, tmp_path):
    relabelled = policy_set(tmp_path / "v2", secondary_changes_identifier=True, expect="allow")
    spaces = relabelled / "spaces.yaml"
    text = spaces.read_text(encoding="utf-8")
    assert "My account (Mon compte)" in text
    spaces.write_text(text.replace("My account (Mon compte)", "Account"), encoding="utf-8")
    authz(env, "policy", "apply", str(relabelled))
    with rt.read_sessions() as s:
        assert s.scalar(select(Space.label).where(Space.code == "my_account")) == "Account"
    # A command (or an instance) starting with the shipped files keeps the stored catalogue.
    authz(env, "clients", "create", "portal")
    with rt.read_sessions() as s:
        assert s.scalar(select(Space.label).where(Space.code == "my_account")) == "Account"


# --- two instances on one PostgreSQL database ------------------------------------


@pytest.mark.skipif(not POSTGRES_URL, reason="AUTHZ_TEST_POSTGRES_URL is not set")
def test_two_instances_follow_writes_and_policy_versions_of_one_database(tmp_path):
    with postgres_schema() as url:
        # One thread per worker: a busy worker leaves the next request to another.
        env = serve_env(url, tmp_path / "var", threads="1")
        subprocess.run([authz_command(), "db", "upgrade"], env=env, check=True, timeout=120)
        rt = build_runtime(load_settings(environ=env))
        try:
            with rt.sessions() as session:
                world = load_world(session, WORLD)
                session.commit()
            with rt.sessions() as session:
                alice = session.get(User, world.users["alice"])
                alice.password_hash = rt.hasher.hash(PASSWORD)
                session.commit()
                _, key = create_client(session, rt, "portal")
        finally:
            close_runtime(rt)
        acme, sales = world.structures["acme"], world.services[("acme", "sales")]
        victor = {
            "user_id": world.users["victor"],
            "structure_id": acme,
            "service": "sales",
            "space": "issued_invoices",
            "action": "modify",
        }
        sophie = {
            "user_id": world.users["sophie"],
            "structure_id": acme,
            "space": None,
            "action": "identifier.change",
        }
        with (
            serving(env, tmp_path / "one.log") as one,
            serving(env, tmp_path / "two.log") as two,
        ):
            assert one.port != two.port
            # A write on one instance (alice deactivates the sales service)...
            status, token = one.call(
                "POST",
                "/v1/auth/token",
                {"login_email": "alice@example.org", "password": PASSWORD},
            )
            assert status == 200, token
            status, patched = one.call(
                "PATCH",
                f"/v1/structures/{acme}/services/{sales}",
                {"active": False},
                token["access_token"],
            )
            assert status == 200
            # ...answers the revision it committed; a check at that revision on
            # every worker of the other instance sees it.
            written = patched["revision"]
            assert written == revision_of(url)
            for _ in range(8):
                status, answer = two.call(
                    "POST", "/v1/checks", {**victor, "at_least_revision": written}, key
                )
                assert status == 200, answer
                assert (answer["allowed"], answer["reason"]) == (False, "service inactive")
                assert answer["revision"] >= written

            # A set whose assertions fail: refused, nothing changed on either.
            broken = policy_set(
                tmp_path / "broken", secondary_changes_identifier=False, expect="allow"
            )
            refused = subprocess.run(
                [authz_command(), "policy", "apply", str(broken)],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert refused.returncode == 1, refused.stdout + refused.stderr
            for server in (one, two):
                for _ in range(4):
                    answer = server.call("POST", "/v1/checks", sophie, key)[1]
                    assert (answer["allowed"], answer["policy_version"]) == (True, 1)

            # A changed role catalogue reaches every worker of both within a second.
            changed = policy_set(tmp_path / "v2", secondary_changes_identifier=False, expect="deny")
            subprocess.run(
                [authz_command(), "policy", "apply", str(changed)],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
            applied = time.monotonic()
            first = [server.call("POST", "/v1/checks", sophie, key)[1] for server in (one, two)]
            assert time.monotonic() - applied < 1.0
            # ...and every worker of both answers with it from its very next request.
            answers = first + every_worker_answers(one, two, sophie, key)
            assert {(a["allowed"], a["policy_version"]) for a in answers} == {(False, 2)}


def every_worker_answers(one, two, body, key) -> list[dict]:
    """Checks on both instances, four at a time, until each of their workers has
    answered at least one of them (within 60 s: however fast a worker answers,
    the other one gets a request while the first is busy); their answers."""
    marks = {server.port: len(server.served()) for server in (one, two)}
    answers: list[dict] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        answered: set = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answers += pool.map(
                lambda server: server.call("POST", "/v1/checks", body, key)[1], [one, two] * 4
            )
            answered = {
                pid
                for s in (one, two)
                for pid, _s, _m, path in s.served()[marks[s.port] :]
                if path == "/v1/checks"
            }
            if answered >= one.workers() | two.workers():
                return answers
    pytest.fail(f"not every worker answered: {answered}")


def revision_of(url: str) -> int:
    rt = build_runtime(load_settings({"database_url": url}))
    try:
        with rt.read_sessions() as s:
            return s.scalars(select(PolicyRevision.revision)).one()
    finally:
        close_runtime(rt)


def test_asking_the_policy_in_force_does_not_hide_a_change_from_the_next_decision(rt):
    """Workflows read the version on the decider's kept connection; the change
    that read saw must still reach the index at the next decision (SQLite's
    data_version says only whether something moved since the last read)."""
    sophie, _, acme = ids(rt)
    assert decide(rt, sophie, acme, "identifier.change").allowed
    with rt.sessions() as session:
        session.get(User, sophie).status = "inactive"
        bump_revision(session, users=[sophie])
        session.commit()
    _ = rt.management  # polls: sees the new revision, does not refresh the index
    denied = decide(rt, sophie, acme, "identifier.change")
    assert (denied.allowed, denied.reason) == (
        False,
        "user account inactive (deactivated by its owner)",
    )
