"""`authz policy test | explain | diff` (authz/review/policytest.py): assertion files
run against the policy files, decisions explained, policy changes reviewed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from authz.config import ROOT
from authz.review.fixtures import load_world
from authz.runtime import Runtime, sync_catalogue
from models import Attachment, Structure, Subscription, User
from tests.support.cli import authz

POLICIES = ROOT / "policies"
SETS = POLICIES / "tests" / "sets.yaml"
SETS_WORLD = yaml.safe_load(SETS.read_text(encoding="utf-8"))["world"]
# Every create the sets.yaml world allows: all go when levels.csv drops
# `p2, modify, create, active` (the only row allowing create). Not listed:
# closedco (inactive), south (inactive service), received_invoices on the
# private shop, robot and mayor (consult only), inactive/pending/closed accounts.
CREATES = {
    "boss on shop: manager_activities:create",
    "boss on shop: my_account:create",
    "boss on shop/north: manager_activities:create",
    "boss on shop/north: my_account:create",
    "deputy on shop: manager_activities:create",
    "deputy on shop: my_account:create",
    "deputy on shop/north: manager_activities:create",
    "deputy on shop/north: my_account:create",
    "clerk on shop: issued_invoices:create",
    "clerk on shop: my_account:create",
    "clerk on shop/north: issued_invoices:create",
    "clerk on shop/north: my_account:create",
    "mayor on town: my_account:create",
}


def write_yaml(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def no_create_policies(tmp_path: Path) -> Path:
    """A copy of policies/ whose levels.csv drops `p2, modify, create, active`."""
    target = tmp_path / "no-create"
    shutil.copytree(POLICIES, target)
    levels = target / "levels.csv"
    lines = levels.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if line.strip() != "p2, modify, create, active"]
    assert len(kept) == len(lines) - 1
    levels.write_text("".join(kept), encoding="utf-8")
    return target


@pytest.fixture
def world_db(cli_rt: Runtime) -> Runtime:
    """The CLI's database with the space catalogue and the sets.yaml world."""
    sync_catalogue(cli_rt)
    with cli_rt.sessions() as session:
        load_world(session, SETS_WORLD)
        session.commit()
    return cli_rt


# --- authz policy test ------------------------------------------------------------


def test_shipped_assertion_files_pass_and_cover_every_rule() -> None:
    result = authz("policy", "test")
    assert "PASS" in result.output and "FAIL" not in result.output
    for name in ("decisions.yaml", "sets.yaml"):
        assert name in result.output
    assert "7/7 levels.csv rows, 46/46 roles.yaml rows" in result.output
    assert "not exercised" not in result.output


def test_a_flipped_expectation_fails_with_the_row_and_its_explanation(tmp_path: Path) -> None:
    doc = yaml.safe_load((POLICIES / "tests" / "decisions.yaml").read_text(encoding="utf-8"))
    row = next(
        r
        for r in doc["rows"]
        if (r["user"], r["structure"], r.get("space"), r["action"])
        == ("sam", "acme", "issued_invoices", "create")
    )
    assert row["expect"] == "allow"
    row["expect"] = "deny"
    result = authz("policy", "test", str(write_yaml(tmp_path / "flipped.yaml", doc)), code=1)
    assert "FAIL" in result.output and "1 failed" in result.output
    assert "sam@acme:issued_invoices:create" in result.output
    assert "expected deny, got allow" in result.output
    assert "levels.csv row: p2, modify, create, active" in result.output
    assert "subscription" in result.output


def test_a_flipped_set_assertion_names_the_user_on_the_wrong_side(tmp_path: Path) -> None:
    doc = yaml.safe_load(SETS.read_text(encoding="utf-8"))
    doc["exactly_subjects"][0]["users"] = ["clerk"]  # robot consults too
    result = authz("policy", "test", str(write_yaml(tmp_path / "sets.yaml", doc)), code=1)
    assert "exactly these users: *@shop:issued_invoices:consult" in result.output
    assert ": robot: expected deny, got allow" in result.output


def test_coverage_lists_the_rules_no_allow_assertion_exercised(tmp_path: Path) -> None:
    doc = {
        "world": SETS_WORLD,
        "rows": [
            {
                "user": "clerk",
                "structure": "shop",
                "space": "issued_invoices",
                "action": "consult",
                "expect": "allow",
                "why": "modify implies consult",
            },
            {
                "user": "clerk",
                "structure": "shop",
                "space": "issued_invoices",
                "action": "create",
                "expect": "allow",
                "why": "modify on an active structure",
            },
        ],
    }
    result = authz("policy", "test", str(write_yaml(tmp_path / "few.yaml", doc)))
    assert "coverage: 2/7 levels.csv rows, 0/46 roles.yaml rows" in result.output
    assert "not exercised: p2, consult, consult, inactive  (levels.csv)" in result.output
    assert "not exercised: p, principal, users.manage, active  (roles.yaml)" in result.output
    assert "p2, modify, create, active" not in result.output


# --- authz policy explain ---------------------------------------------------------


def test_explain_an_allow_names_attachment_subscription_and_p2_row(
    world_db: Runtime, cli_env: dict[str, str]
) -> None:
    with world_db.sessions() as s:
        clerk = s.scalars(select(User).where(User.login_email == "clerk@fixtures.invalid")).one()
        shop = s.scalars(select(Structure).where(Structure.designation == "shop")).one()
        # clerk is in two structures: the rows of shop, the one the question names.
        subscription = s.scalars(
            select(Subscription).where(
                Subscription.user_id == clerk.id,
                Subscription.structure_id == shop.id,
                Subscription.space_code == "issued_invoices",
            )
        ).one()
        attachment = s.scalars(
            select(Attachment).where(
                Attachment.user_id == clerk.id, Attachment.structure_id == shop.id
            )
        ).one()
    result = authz(
        "policy",
        "explain",
        "clerk@fixtures.invalid",
        "shop",
        "issued_invoices",
        "create",
        env=cli_env,
    )
    assert "decision: ALLOW" in result.output
    assert f"attachment {attachment.id}: role simple, validated, whole structure" in result.output
    assert (
        f"subscription {subscription.id}: level modify on issued_invoices (all services)"
        in result.output
    )
    assert "levels.csv row: p2, modify, create, active" in result.output
    assert "matcher: policies/model.conf [matchers] m2" in result.output


def test_explain_a_deny_gives_the_first_missing_link(
    world_db: Runtime, cli_env: dict[str, str]
) -> None:
    pending = authz(
        "policy",
        "explain",
        "newbie@fixtures.invalid",
        "shop",
        "issued_invoices",
        "consult",
        env=cli_env,
    )
    assert "decision: DENY" in pending.output
    assert "first missing link: user account pending" in pending.output
    south = authz(
        "policy",
        "explain",
        "clerk@fixtures.invalid",
        "shop",
        "my_account",
        "consult",
        "--service",
        "south",
        env=cli_env,
    )
    assert "first missing link: service inactive" in south.output


def test_explain_a_management_action(world_db: Runtime, cli_env: dict[str, str]) -> None:
    allowed = authz(
        "policy", "explain", "boss@fixtures.invalid", "shop", "-", "users.manage", env=cli_env
    )
    assert "decision: ALLOW" in allowed.output
    assert "roles.yaml rule: p, principal, users.manage, active" in allowed.output
    denied = authz(
        "policy", "explain", "outsider@fixtures.invalid", "shop", "-", "structure.view", env=cli_env
    )
    assert "first missing link: no validated attachment in force on this structure" in denied.output
    missing = authz(
        "policy",
        "explain",
        "nobody@example.org",
        "shop",
        "-",
        "structure.view",
        env=cli_env,
        code=1,
    )
    assert "error: No user 'nobody@example.org'" in missing.output


# --- authz policy diff ------------------------------------------------------------


def test_diff_on_a_fixture_lists_exactly_the_create_decisions_that_change(
    no_create_policies: Path,
) -> None:
    result = authz("policy", "diff", str(POLICIES), str(no_create_policies), "--fixture", str(SETS))
    lines = set(result.stdout.splitlines())
    assert lines == {f"{change}: allow -> deny" for change in CREATES}
    assert "13 decision(s) change." in result.output


def test_diff_on_the_configured_database(
    world_db: Runtime,
    cli_env: dict[str, str],
    no_create_policies: Path,
) -> None:
    result = authz("policy", "diff", str(POLICIES), str(no_create_policies), env=cli_env)
    lines = set(result.stdout.splitlines())
    assert lines == {
        f"{change.replace(' on ', '@fixtures.invalid on ', 1)}: allow -> deny" for change in CREATES
    }


def test_diff_of_identical_policy_files_lists_nothing(tmp_path: Path) -> None:
    same = tmp_path / "same"
    shutil.copytree(POLICIES, same)
    result = authz("policy", "diff", str(POLICIES), str(same), "--fixture", str(SETS))
    assert result.stdout == ""
    assert "0 decision(s) change." in result.output
