"""Rights can be narrowed (issue 15): a manager changes a member's role, adds or
removes services of their attachment, revokes one subscription line; unticking
a service while validating an attachment request, or deactivating a service,
leaves the attachment "deactivated" (the guide's "Désactivé"). Each change has
its history entry, its mail and its revision, and checks stop allowing at once.
"""

from __future__ import annotations

import pytest

from tests.support.api import Api
from tests.support.membership import (
    ATT,
    Bakery,
    allowed,
    ask_subscription,
    attached,
    contact_of,
    history,
    notifications,
    person,
    process,
    snapshot,
)
from tests.support.rows import add_attachment, revision


def users_url(bakery: Bakery, who: Api, rest: str = "") -> str:
    return f"/v1/structures/{bakery.id}/users/{who.user['id']}{rest}"


def statuses(member: dict) -> dict:
    """{service code or None: status} of a member's attachment rows."""
    return {line["service_code"]: line["status"] for line in member["attachments"]}


def subscribed(api: Api, bakery: Bakery, login: str, *lines, services=None) -> Api:
    """A member attached (to `services`, else the whole structure) whose
    subscription request for `lines` Claire validated."""
    who = attached(api, bakery, login, services=services)
    asked = ask_subscription(who, bakery.id, *lines)
    assert process(bakery.claire, "subscription", asked["id"], "validation").status_code == 200
    return who


# --- role -----------------------------------------------------------------------


def test_a_manager_promotes_and_demotes_a_member_and_checks_follow_at_once(api, rt, bakery):
    claire, sid = bakery.claire, bakery.id
    lucie = attached(api, bakery, "lucie@login.example")
    assert not allowed(lucie, sid, None, "attachment_requests.process")

    up = claire.put(
        users_url(bakery, lucie, "/role"), json={"role": "secondary", "comment": "Bravo"}
    )
    assert up.status_code == 200, up.json
    assert up.json["role"] == "secondary"
    assert allowed(lucie, sid, None, "attachment_requests.process", at=revision(rt))

    down = claire.put(users_url(bakery, lucie, "/role"), json={"role": "simple"})
    assert down.json["role"] == "simple"
    assert not allowed(lucie, sid, None, "attachment_requests.process", at=revision(rt))

    entries = history(claire, sid, action="attachment.role_changed")
    assert [e["comment"] for e in entries] == ["Role changed", "Role changed"]
    assert all(e["target_user_id"] == lucie.user["id"] for e in entries)
    mails = [m.subject for m in notifications(rt, contact_of(lucie))]
    assert sum(subject.startswith("Your role on") for subject in mails) == 2


def test_the_same_role_again_changes_nothing(api, rt, bakery):
    lucie = attached(api, bakery, "lucie@login.example")
    before = snapshot(rt, bakery.id)
    r = bakery.claire.put(users_url(bakery, lucie, "/role"), json={"role": "simple"})
    assert r.status_code == 200
    assert snapshot(rt, bakery.id) == before


def test_role_changes_are_refused_to_whom_the_workflows_refuse_them(api, rt, bakery, structure_of):
    """Nobody changes the principal here; a simple member may not; another
    structure's manager sees nothing (404, as an unknown user); a technical
    user's role is its own; only secondary or simple are given."""
    claire, sid = bakery.claire, bakery.id
    paul = attached(api, bakery, "paul@login.example", role="secondary")
    lucie = attached(api, bakery, "lucie@login.example")
    other = person(api, "autre@login.example")
    structure_of(other, "Autre")
    tech = person(api, "tech@login.example")
    add_attachment(rt, tech.user["id"], sid, "technical")
    before = snapshot(rt, sid)

    principal = paul.put(users_url(bakery, claire, "/role"), json={"role": "simple"})
    assert (principal.status_code, principal.json["code"]) == (409, "user_is_principal")
    simple = lucie.put(users_url(bakery, paul, "/role"), json={"role": "simple"})
    assert (simple.status_code, simple.json["code"]) == (403, "action_not_allowed")
    foreign = other.put(users_url(bakery, lucie, "/role"), json={"role": "secondary"})
    unknown = claire.put(f"/v1/structures/{sid}/users/987654/role", json={"role": "secondary"})
    assert foreign.status_code == unknown.status_code == 404
    technical = claire.put(users_url(bakery, tech, "/role"), json={"role": "simple"})
    assert (technical.status_code, technical.json["code"]) == (409, "technical_user")
    bad = claire.put(users_url(bakery, lucie, "/role"), json={"role": "principal"})
    assert bad.status_code == 422
    assert snapshot(rt, sid) == before


# --- services -------------------------------------------------------------------


def test_a_manager_adds_then_removes_a_service_and_checks_follow(api, rt, bakery):
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    lucie = attached(api, bakery, "lucie@login.example", services=["ATELIER"])
    assert not allowed(lucie, sid, "my_account", "consult", service="BOUTIQUE")

    added = claire.post(
        users_url(bakery, lucie, "/services"), json={"service_ids": [svc["BOUTIQUE"]]}
    )
    assert added.status_code == 200, added.json
    assert statuses(added.json) == {"ATELIER": "validated", "BOUTIQUE": "validated"}
    assert allowed(lucie, sid, "my_account", "consult", service="BOUTIQUE", at=revision(rt))

    removed = claire.delete(users_url(bakery, lucie, f"/services/{svc['BOUTIQUE']}"))
    assert removed.status_code == 200, removed.json
    assert statuses(removed.json) == {"ATELIER": "validated", "BOUTIQUE": "deactivated"}
    assert not allowed(lucie, sid, "my_account", "consult", service="BOUTIQUE", at=revision(rt))
    assert allowed(lucie, sid, "my_account", "consult", service="ATELIER")

    actions = [e["action"] for e in history(claire, sid, user_id=lucie.user["id"])]
    assert {"attachment.services_added", "attachment.services_removed"} <= set(actions)
    subjects = [m.subject for m in notifications(rt, contact_of(lucie))]
    assert any(s.startswith("Services added on") for s in subjects)
    assert any(s.startswith("Service withdrawn on") for s in subjects)


def test_removing_a_service_withdraws_the_subscriptions_it_carried(api, rt, bakery):
    """A works-invoices subscription on ATELIER ends with the ATELIER
    attachment, and does not come back when ATELIER is added again."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    lucie = subscribed(
        api,
        bakery,
        "lucie@login.example",
        ("works_invoices", svc["ATELIER"], "modify"),
        services=["ATELIER", "BOUTIQUE"],
    )
    assert allowed(lucie, sid, "works_invoices", "modify", service="ATELIER")
    claire.delete(users_url(bakery, lucie, f"/services/{svc['ATELIER']}"))
    assert not allowed(lucie, sid, "works_invoices", "consult", service="ATELIER", at=revision(rt))
    claire.post(users_url(bakery, lucie, "/services"), json={"service_ids": [svc["ATELIER"]]})
    assert not allowed(lucie, sid, "works_invoices", "consult", service="ATELIER", at=revision(rt))


def test_service_changes_refused(api, rt, bakery):
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    lucie = attached(api, bakery, "lucie@login.example", services=["ATELIER"])
    whole = attached(api, bakery, "whole@login.example")
    before = snapshot(rt, sid)

    last = claire.delete(users_url(bakery, lucie, f"/services/{svc['ATELIER']}"))
    assert (last.status_code, last.json["code"]) == (409, "last_attachment")
    not_attached = claire.delete(users_url(bakery, lucie, f"/services/{svc['BOUTIQUE']}"))
    assert not_attached.status_code == 404
    more = claire.post(
        users_url(bakery, whole, "/services"), json={"service_ids": [svc["ATELIER"]]}
    )
    assert (more.status_code, more.json["code"]) == (409, "whole_structure")
    inactive = claire.post(
        users_url(bakery, lucie, "/services"), json={"service_ids": [svc["ANCIEN"]]}
    )
    assert (inactive.status_code, inactive.json["code"]) == (422, "unknown_service")
    by_simple = whole.post(
        users_url(bakery, lucie, "/services"), json={"service_ids": [svc["BOUTIQUE"]]}
    )
    assert (by_simple.status_code, by_simple.json["code"]) == (403, "action_not_allowed")
    assert snapshot(rt, sid) == before


# --- one subscription -------------------------------------------------------------


def test_a_manager_revokes_one_subscription_line(api, rt, bakery):
    claire, sid = bakery.claire, bakery.id
    lucie = subscribed(
        api,
        bakery,
        "lucie@login.example",
        ("issued_invoices", None, "modify"),
        ("issued_solicitations", None, "consult"),
    )
    listed = claire.get(users_url(bakery, lucie, "/subscriptions"))
    assert listed.status_code == 200, listed.json
    by_space = {s["space"]: s for s in listed.json["items"]}
    assert by_space["issued_invoices"]["status"] == "validated"

    gone = claire.delete(
        users_url(bakery, lucie, f"/subscriptions/{by_space['issued_invoices']['id']}")
    )
    assert gone.status_code == 200 and gone.json["revision"] >= 1, gone.json
    assert not allowed(lucie, sid, "issued_invoices", "consult", at=revision(rt))
    assert allowed(lucie, sid, "issued_solicitations", "consult")
    after = {
        s["space"]: s["status"]
        for s in claire.get(users_url(bakery, lucie, "/subscriptions")).json["items"]
    }
    assert after == {"issued_invoices": "deactivated", "issued_solicitations": "validated"}
    entry = history(claire, sid, action="subscription.revoked")[0]
    assert (entry["comment"], entry["target_user_id"]) == ("Deactivated", lucie.user["id"])
    assert any(
        m.subject.startswith("Subscription on") and "revoked" in m.subject
        for m in notifications(rt, contact_of(lucie))
    )
    again = claire.delete(
        users_url(bakery, lucie, f"/subscriptions/{by_space['issued_invoices']['id']}")
    )
    assert again.status_code == 404


def test_revoking_follows_the_ranks(api, rt, bakery, structure_of):
    """A secondary never revokes the principal's subscription; the principal
    revokes their own; a simple member revokes nothing; another structure's
    manager gets 404."""
    claire, sid = bakery.claire, bakery.id
    paul = attached(api, bakery, "paul@login.example", role="secondary")
    mine = ask_subscription(claire, sid, ("issued_invoices", None, "modify"))
    assert process(paul, "subscription", mine["id"], "validation").status_code == 200
    sub_id = claire.get(users_url(bakery, claire, "/subscriptions")).json["items"][0]["id"]
    lucie = attached(api, bakery, "lucie@login.example")
    other = person(api, "autre@login.example")
    structure_of(other, "Autre")

    by_paul = paul.delete(users_url(bakery, claire, f"/subscriptions/{sub_id}"))
    assert (by_paul.status_code, by_paul.json["code"]) == (409, "user_is_principal")
    by_lucie = lucie.delete(users_url(bakery, claire, f"/subscriptions/{sub_id}"))
    assert (by_lucie.status_code, by_lucie.json["code"]) == (403, "action_not_allowed")
    assert other.delete(users_url(bakery, claire, f"/subscriptions/{sub_id}")).status_code == 404
    assert allowed(claire, sid, "issued_invoices", "create")
    own = claire.delete(users_url(bakery, claire, f"/subscriptions/{sub_id}"))
    assert own.status_code == 200, own.json
    assert not allowed(claire, sid, "issued_invoices", "create", at=revision(rt))


# --- unticking at validation, deactivating a service ---------------------------------


def test_unticking_a_held_service_at_validation_deactivates_it(api, rt, bakery):
    """Lucie holds ATELIER and asks for BOUTIQUE; both are pre-ticked. Claire
    validates with BOUTIQUE only: ATELIER becomes deactivated and denied."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    lucie = attached(api, bakery, "lucie@login.example", services=["ATELIER"])
    asked = lucie.post(
        ATT,
        json={"structure_id": sid, "whole_structure": False, "service_ids": [svc["BOUTIQUE"]]},
    ).json
    detail = claire.get(f"{ATT}/{asked['id']}").json
    assert {s["code"] for s in detail["services"] if s["preselected"]} == {"ATELIER", "BOUTIQUE"}

    done = process(
        claire,
        "attachment",
        asked["id"],
        "validation",
        whole_structure=False,
        service_ids=[svc["BOUTIQUE"]],
    )
    assert done.status_code == 200, done.json
    detail = claire.get(f"{ATT}/{asked['id']}").json
    assert {s["code"]: s["status"] for s in detail["services"]} == {
        "ATELIER": "deactivated",
        "BOUTIQUE": "validated",
    }
    assert not allowed(lucie, sid, "my_account", "consult", service="ATELIER", at=revision(rt))
    assert allowed(lucie, sid, "my_account", "consult", service="BOUTIQUE")
    mail = notifications(rt, contact_of(lucie))[-1]
    assert "No longer attached to: ATELIER" in mail.body


def test_validating_without_ticks_keeps_what_the_member_holds(api, rt, bakery):
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    lucie = attached(api, bakery, "lucie@login.example", services=["ATELIER"])
    asked = lucie.post(
        ATT,
        json={"structure_id": sid, "whole_structure": False, "service_ids": [svc["BOUTIQUE"]]},
    ).json
    assert process(claire, "attachment", asked["id"], "validation").status_code == 200
    member = claire.get(f"/v1/structures/{sid}/users").json["items"]
    mine = next(m for m in member if m["user"]["id"] == lucie.user["id"])
    assert statuses(mine) == {"ATELIER": "validated", "BOUTIQUE": "validated"}


@pytest.mark.parametrize("reactivate", [False, True])
def test_deactivating_a_service_deactivates_its_attachments(api, rt, bakery, reactivate):
    """The rows become deactivated with their subscriptions there (denied at
    once, the member is mailed), and stay so if the service comes back."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    lucie = subscribed(
        api,
        bakery,
        "lucie@login.example",
        ("works_invoices", svc["ATELIER"], "modify"),
        services=["ATELIER", "BOUTIQUE"],
    )
    off = claire.patch(f"/v1/structures/{sid}/services/{svc['ATELIER']}", json={"active": False})
    assert off.status_code == 200, off.json
    if reactivate:
        on = claire.patch(f"/v1/structures/{sid}/services/{svc['ATELIER']}", json={"active": True})
        assert on.status_code == 200
    member = next(
        m
        for m in claire.get(f"/v1/structures/{sid}/users").json["items"]
        if m["user"]["id"] == lucie.user["id"]
    )
    assert statuses(member) == {"ATELIER": "deactivated", "BOUTIQUE": "validated"}
    assert not allowed(lucie, sid, "works_invoices", "consult", service="ATELIER", at=revision(rt))
    subs = claire.get(users_url(bakery, lucie, "/subscriptions")).json["items"]
    assert [s["status"] for s in subs] == ["deactivated"]
    assert any("deactivated" in m.subject for m in notifications(rt, contact_of(lucie)))
    entry = history(claire, sid, action="service.updated")
    assert any(
        lucie.user["id"] in (e.get("after") or {}).get("deactivated_attachments", [])
        for e in [claire.get(f"/v1/history/{e['id']}").json for e in entry]
    )
