"""Denials name the missing link precisely (issue 15): the date an attachment
starts or ended, the state of an account, in native checks, explanations and
AuthZEN contexts."""

from __future__ import annotations

import datetime as dt

from authz import roles
from authz.workflows.records import bump_revision
from tests.support.api import attach_directly
from tests.support.membership import Bakery, addr, check, login_of, person
from tests.support.rows import attachment_row, key_headers


def dated(rt, who, bakery: Bakery, *, valid_from: dt.date, valid_until: dt.date | None) -> int:
    """A validated attachment of `who` to the whole bakery with these dates;
    the revision it was committed at."""
    with rt.sessions() as s:
        s.add(
            attachment_row(
                who.user["id"], bakery.id, valid_from=valid_from, valid_until=valid_until
            )
        )
        revision = bump_revision(s, memberships=[(who.user["id"], bakery.id)])
        s.commit()
        return revision


def test_an_attachment_starting_tomorrow_is_denied_naming_its_start(api, rt, bakery):
    tomorrow = roles.today() + dt.timedelta(days=1)
    lucie = person(api, "lucie@login.example")
    attach_directly(bakery.claire, bakery.id, login_of(lucie), valid_from=tomorrow.isoformat())
    expected = (
        "no validated attachment in force covering this scope: "
        f"attachment starts on {tomorrow.isoformat()}"
    )
    space = check(lucie, lucie.user["id"], bakery.id, "my_account", "consult")
    assert (space["allowed"], space["reason"]) == (False, expected)
    management = check(
        bakery.claire, lucie.user["id"], bakery.id, None, "structure.view", headers=key_headers(rt)
    )
    assert management["reason"] == (
        "no validated attachment in force on this structure: "
        f"attachment starts on {tomorrow.isoformat()}"
    )
    evaluation = api.post(
        "/access/v1/evaluation",
        json={
            "subject": {"type": "user", "id": str(lucie.user["id"])},
            "resource": {"type": "space", "id": f"{bakery.id}/my_account"},
            "action": {"name": "consult"},
        },
        headers=key_headers(rt),
    )
    assert evaluation.json["context"]["reason"] == expected


def test_an_ended_attachment_is_denied_naming_its_end(api, rt, bakery):
    ended = roles.today() - dt.timedelta(days=3)
    lucie = person(api, "lucie@login.example")
    at = dated(rt, lucie, bakery, valid_from=ended - dt.timedelta(days=30), valid_until=ended)
    decision = check(lucie, lucie.user["id"], bakery.id, "my_account", "consult", at=at)
    assert decision["reason"].endswith(f"attachment ended on {ended.isoformat()}")


def test_an_account_not_active_is_named(api, rt, bakery):
    """A pending account (created by the bakery, attached at once) is denied as
    pending activation, on spaces and on management actions alike."""
    r = bakery.claire.post(
        "/v1/accounts",
        json={
            "login_email": addr("nina@login.example"),
            "first_name": "Nina",
            "last_name": "Roux",
            "structure_id": bakery.id,
        },
    )
    assert r.status_code == 201, r.json
    attach_directly(bakery.claire, bakery.id, r.json["id"])
    for space, action in (("my_account", "consult"), (None, "structure.view")):
        decision = check(
            bakery.claire, r.json["id"], bakery.id, space, action, headers=key_headers(rt)
        )
        assert decision["reason"] == "user account pending activation", (space, decision)
