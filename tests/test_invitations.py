"""Consent before power over an account (issue 10, point 1; docs/decisions.md
"Consent"): a manager's direct attachment of an account that is not the
structure's to attach at once is an invitation that grants nothing until the
person accepts it; a manager modifies only an account their structure owns,
never one of a higher role; a person may leave a structure themself."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select

from authz.roles import today
from authz.workflows import invitations, maintenance
from authz.workflows.records import current_revision
from models import Attachment, HistoryEntry, Invitation, Structure, User
from tests.support.api import PASSWORD, Api, activation_token, outbox

TODAY = today  # the service's date is UTC's, not the machine's (tests/conftest.py)


def revision(rt) -> int:
    with rt.sessions() as s:
        return current_revision(s)


def decide(caller: Api, user_id: int, structure_id: int, space: str | None, action: str) -> bool:
    r = caller.post(
        "/v1/checks",
        json={
            "user_id": user_id,
            "structure_id": structure_id,
            "space": space,
            "action": action,
            "at_least_revision": revision(caller.rt),
        },
    )
    assert r.status_code == 200, r.json
    return r.json["allowed"]


def notifications(rt, address: str) -> list[str]:
    return [m.subject for m in outbox(rt, address) if m.kind == "notification"]


def actions(rt, structure_id: int) -> list[str]:
    with rt.sessions() as s:
        return list(
            s.scalars(
                select(HistoryEntry.action)
                .where(HistoryEntry.structure_id == structure_id)
                .order_by(HistoryEntry.id)
            )
        )


def attach(manager: Api, structure_id: int, **body):
    return manager.post(
        f"/v1/structures/{structure_id}/attachments",
        json={"whole_structure": True, **body},
    )


def rows(rt, user_id: int, structure_id: int) -> list[tuple]:
    with rt.sessions() as s:
        return sorted(
            (a.service_id or 0, a.role, a.status, a.valid_from, a.valid_until)
            for a in s.scalars(
                select(Attachment).where(
                    Attachment.user_id == user_id, Attachment.structure_id == structure_id
                )
            )
        )


def created_for(manager: Api, structure_id: int, email: str, first="Noé", last="Neuf") -> int:
    """A pending account a manager created for their structure; its id."""
    r = manager.post(
        "/v1/accounts",
        json={
            "structure_id": structure_id,
            "login_email": email,
            "first_name": first,
            "last_name": last,
        },
    )
    assert r.status_code == 201, r.json
    return r.json["id"]


def activate(api: Api, email: str) -> Api:
    """Activate a pending account through its mailed link, then log in."""
    token = activation_token(api.rt, email)
    r = api.client.post("/v1/accounts/activation", json={"token": token, "password": PASSWORD})
    assert r.status_code == 200, r.json
    login = api.client.post("/v1/auth/token", json={"login_email": email, "password": PASSWORD})
    assert login.status_code == 200, login.json
    return Api(api.client, api.rt, login.json["access_token"], r.json)


@pytest.fixture
def town(api, structure_of):
    """Claire is the principal of a town hall; a stranger could want her account."""
    claire = api.person("claire.martin@mairie.example", "Claire", "Martin")
    return claire, structure_of(claire, "Mairie de Sainte-Exemple")["id"]


# --- the attack of issue 10, end to end -----------------------------------------


def test_attaching_someone_else_gives_an_invitation_and_no_power_over_them(api, rt, town):
    claire, townhall = town
    mallory = api.person("mallory@evil.example", "Mallory", "Evil")
    private = mallory.post(
        "/v1/structures",
        json={"identifier_type": "SIRET", "identifier_value": "35600000000048", "designation": "X"},
    ).json["id"]
    before = revision(rt)
    r = attach(
        mallory,
        private,
        login_email="Claire.Martin@mairie.example",
        role="secondary",
        valid_from="2099-01-01",
    )
    # An invitation: nothing granted, no attachment row, no revision bump.
    assert r.status_code == 202, r.json
    assert (r.json["status"], r.json["user_id"], r.json["role"]) == (
        "pending",
        claire.user["id"],
        "secondary",
    )
    assert rows(rt, claire.user["id"], private) == []
    assert revision(rt) == before
    for action in ("structure.view", "users.manage", "attachments.create"):
        assert not decide(claire, claire.user["id"], private, None, action)
    assert decide(claire, claire.user["id"], townhall, None, "users.manage")
    # Mallory has no power over Claire's account: she does not even see it…
    assert mallory.get(f"/v1/users/{claire.user['id']}").status_code == 404
    r = mallory.patch(
        f"/v1/users/{claire.user['id']}",
        json={"contact_email": "inbox@evil.example", "last_name": "Owned"},
    )
    assert r.status_code == 404 and r.json["code"] == "not_found"
    assert mallory.get(f"/v1/structures/{private}/users").json["total"] == 1  # herself
    access = mallory.get(f"/v1/structures/{private}/access").json["items"]
    assert [m["user_id"] for m in access] == [mallory.user["id"]]
    listed = mallory.get(f"/v1/users/{claire.user['id']}/permissions")
    assert listed.status_code == 404
    # …and Claire is unchanged, told by mail, and free to refuse.
    me = claire.get("/v1/me").json
    assert (me["contact_email"], me["last_name"]) == ("claire.martin@mairie.example", "Martin")
    assert notifications(rt, "claire.martin@mairie.example") == ["Invitation to join X"]
    assert notifications(rt, "inbox@evil.example") == []
    [mine] = claire.get("/v1/me/invitations").json["items"]
    assert mine["id"] == r_id(mallory, private)
    assert claire.post(f"/v1/me/invitations/{mine['id']}/refusal").status_code == 200
    assert rows(rt, claire.user["id"], private) == []
    assert not decide(claire, claire.user["id"], private, None, "structure.view")


def r_id(manager: Api, structure_id: int) -> int:
    [item] = manager.get(f"/v1/structures/{structure_id}/invitations").json["items"]
    return item["id"]


# --- who is attached at once, who is invited -------------------------------------


def test_an_account_the_structure_created_and_still_pending_is_attached_at_once(api, rt, town):
    claire, townhall = town
    noe = created_for(claire, townhall, "noe@example.org")
    r = attach(claire, townhall, user_id=noe, role="secondary")
    assert r.status_code == 201, r.json
    assert [(a["role"], a["status"]) for a in r.json["attachments"]] == [("secondary", "validated")]
    assert "attachment.created" in actions(rt, townhall)


@pytest.mark.parametrize("how", ["signed_up", "created_elsewhere", "created_here_active"])
def test_every_other_account_is_invited(api, rt, town, structure_of, how):
    claire, townhall = town
    if how == "signed_up":  # pending, but the person's own sign-up
        assert api.signup("noe@example.org", "Noé", "Neuf").status_code == 201
        with rt.sessions() as s:
            user_id = s.scalar(select(User.id).where(User.login_email == "noe@example.org"))
    elif how == "created_elsewhere":  # pending, created by another structure's manager
        bob = api.person("bob@example.org", "Bob", "Other")
        user_id = created_for(bob, structure_of(bob, "Ailleurs")["id"], "noe@example.org")
    else:  # created here, but activated since: the person now decides
        user_id = created_for(claire, townhall, "noe@example.org")
        activate(api, "noe@example.org")
    r = attach(claire, townhall, user_id=user_id)
    assert r.status_code == 202, r.json
    assert rows(rt, user_id, townhall) == []


# --- answering -------------------------------------------------------------------


@pytest.fixture
def invited(api, rt, town):
    """Paul (active) invited by Claire as a secondary manager of the town hall's
    service FIN, from today to the end of next year."""
    claire, townhall = town
    fin = claire.post(
        f"/v1/structures/{townhall}/services", json={"code": "FIN", "label": "Finances"}
    ).json["id"]
    paul = api.person("paul@example.org", "Paul", "Bernard")
    until = dt.date(TODAY().year + 1, 12, 31)
    r = attach(
        claire,
        townhall,
        login_email="paul@example.org",
        role="secondary",
        whole_structure=False,
        service_ids=[fin],
        valid_until=until.isoformat(),
        comment="Bienvenue",
    )
    assert r.status_code == 202, r.json
    assert r.json["service_ids"] == [fin] and r.json["whole_structure"] is False
    return claire, townhall, paul, r.json, fin, until


def test_accepting_attaches_with_the_invitation_role_scope_and_dates(api, rt, invited):
    _claire, townhall, paul, invitation, fin, until = invited
    before = revision(rt)
    r = paul.post(f"/v1/me/invitations/{invitation['id']}/acceptance")
    assert r.status_code == 200, r.json
    assert r.json["status"] == "accepted" and r.json["decided_at"]
    assert rows(rt, paul.user["id"], townhall) == [(fin, "secondary", "validated", TODAY(), until)]
    assert revision(rt) > before
    assert decide(paul, paul.user["id"], townhall, None, "users.manage")
    assert actions(rt, townhall)[-2:] == ["invitation.created", "invitation.accepted"]
    assert notifications(rt, "claire.martin@mairie.example")[-1] == (
        "Invitation to Mairie de Sainte-Exemple accepted"
    )
    # Answered once: a second acceptance, or a refusal, is a conflict.
    for answer in ("acceptance", "refusal"):
        again = paul.post(f"/v1/me/invitations/{invitation['id']}/{answer}")
        assert (again.status_code, again.json["code"]) == (409, "invitation_processed")


def test_refusing_grants_nothing_and_tells_the_managers(api, rt, invited):
    _claire, townhall, paul, invitation, _fin, _until = invited
    before = revision(rt)
    r = paul.post(f"/v1/me/invitations/{invitation['id']}/refusal")
    assert r.status_code == 200 and r.json["status"] == "refused"
    assert rows(rt, paul.user["id"], townhall) == [] and revision(rt) == before
    assert actions(rt, townhall)[-1] == "invitation.refused"
    assert notifications(rt, "claire.martin@mairie.example")[-1] == (
        "Invitation to Mairie de Sainte-Exemple refused"
    )
    again = paul.post(f"/v1/me/invitations/{invitation['id']}/acceptance")
    assert (again.status_code, again.json["code"]) == (409, "invitation_processed")


def test_someone_elses_invitation_does_not_exist_for_you(api, rt, invited):
    _claire, _townhall, _paul, invitation, _fin, _until = invited
    eve = api.person("eve@example.org", "Eve", "Else")
    for answer in ("acceptance", "refusal"):
        theirs = eve.post(f"/v1/me/invitations/{invitation['id']}/{answer}")
        missing = eve.post(f"/v1/me/invitations/999999/{answer}")
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json["detail"] == missing.json["detail"] == "No such invitation."
    assert eve.get("/v1/me/invitations").json["total"] == 0


def test_an_invitation_expires(api, rt, invited):
    claire, townhall, paul, invitation, _fin, _until = invited
    with rt.sessions() as s:
        row = s.get(Invitation, invitation["id"])
        ttl = row.expires_at - row.created_at
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        s.commit()
    assert ttl == dt.timedelta(days=rt.settings.invitation_ttl_days)
    assert paul.get("/v1/me/invitations").json["items"][0]["status"] == "expired"
    pending = paul.get("/v1/me/invitations", query_string={"status": "pending"})
    assert pending.json["total"] == 0
    r = paul.post(f"/v1/me/invitations/{invitation['id']}/acceptance")
    assert (r.status_code, r.json["code"]) == (409, "invitation_expired")
    assert rows(rt, paul.user["id"], townhall) == []
    with rt.sessions() as s:  # `authz maintenance` writes the status and the history
        maintenance.run_maintenance(s, rt)
        assert s.get(Invitation, invitation["id"]).status == "expired"
        assert invitations.expire(s, rt) == 0  # once
    assert actions(rt, townhall)[-1] == "invitation.expired"
    # A new invitation may then be made.
    assert attach(claire, townhall, user_id=paul.user["id"]).status_code == 202


def test_a_manager_withdraws_a_pending_invitation(api, rt, invited, structure_of):
    claire, townhall, paul, invitation, _fin, _until = invited
    bob = api.person("bob@example.org", "Bob", "Other")
    elsewhere = structure_of(bob, "Ailleurs")["id"]
    url = f"/v1/structures/{townhall}/invitations/{invitation['id']}"
    # Not the other structure's to withdraw: as unknown as a missing one.
    theirs = bob.delete(f"/v1/structures/{elsewhere}/invitations/{invitation['id']}")
    missing = bob.delete(f"/v1/structures/{elsewhere}/invitations/999999")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json["detail"] == missing.json["detail"]
    assert bob.delete(url).status_code == 404
    assert claire.delete(url).status_code == 204
    assert actions(rt, townhall)[-1] == "invitation.withdrawn"
    assert notifications(rt, "paul@example.org")[-1] == (
        "Invitation to Mairie de Sainte-Exemple withdrawn"
    )
    r = paul.post(f"/v1/me/invitations/{invitation['id']}/acceptance")
    assert (r.status_code, r.json["code"]) == (409, "invitation_processed")
    again = claire.delete(url)
    assert (again.status_code, again.json["code"]) == (409, "invitation_processed")
    listed = claire.get(f"/v1/structures/{townhall}/invitations").json["items"]
    assert [i["status"] for i in listed] == ["withdrawn"]


def test_one_pending_invitation_per_person_and_none_for_the_principal(api, rt, invited):
    claire, townhall, paul, _invitation, _fin, _until = invited
    r = attach(claire, townhall, user_id=paul.user["id"])
    assert (r.status_code, r.json["code"]) == (409, "invitation_pending")
    own = attach(claire, townhall, user_id=claire.user["id"])
    assert (own.status_code, own.json["code"]) == (409, "user_is_principal")
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Invitation)) == 1


def test_an_invitation_cannot_be_accepted_once_its_structure_or_service_closed(api, rt, invited):
    claire, townhall, paul, invitation, fin, _until = invited
    r = claire.patch(f"/v1/structures/{townhall}/services/{fin}", json={"active": False})
    assert r.status_code == 200, r.json
    r = paul.post(f"/v1/me/invitations/{invitation['id']}/acceptance")
    assert (r.status_code, r.json["code"]) == (409, "invitation_outdated")
    with rt.sessions() as s:
        s.get(Structure, townhall).status = "inactive"
        s.commit()
    r = paul.post(f"/v1/me/invitations/{invitation['id']}/acceptance")
    assert (r.status_code, r.json["code"]) == (409, "structure_inactive")
    assert rows(rt, paul.user["id"], townhall) == []
    # Refusing stays possible.
    assert paul.post(f"/v1/me/invitations/{invitation['id']}/refusal").status_code == 200


def test_an_invitation_is_accepted_once_under_concurrency(app, api, rt, invited):
    _claire, townhall, paul, invitation, _fin, _until = invited
    n = 8
    barrier = threading.Barrier(n)
    statuses: list = [None] * n

    def click(i: int) -> None:
        barrier.wait(timeout=30)
        answer = "acceptance" if i % 2 == 0 else "refusal"
        r = app.test_client().post(
            f"/v1/me/invitations/{invitation['id']}/{answer}",
            headers={"Authorization": f"Bearer {paul.token}"},
        )
        statuses[i] = r.status_code

    threads = [threading.Thread(target=click, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(statuses) == [200] + [409] * (n - 1), statuses
    answered = [
        a for a in actions(rt, townhall) if a in ("invitation.accepted", "invitation.refused")
    ]
    assert len(answered) == 1


def test_only_managers_of_the_structure_see_its_invitations(api, rt, invited):
    _claire, townhall, paul, _invitation, _fin, _until = invited
    r = paul.get(f"/v1/structures/{townhall}/invitations")
    assert r.status_code == 404  # not attached yet: the structure is not his to see


# --- leaving a structure ----------------------------------------------------------


def test_a_person_leaves_a_structure_themself(api, rt, invited):
    _claire, townhall, paul, invitation, _fin, _until = invited
    assert paul.post(f"/v1/me/invitations/{invitation['id']}/acceptance").status_code == 200
    before = revision(rt)
    assert paul.delete(f"/v1/me/structures/{townhall}").status_code == 200
    assert revision(rt) > before
    assert {status for _s, _r, status, _f, _u in rows(rt, paul.user["id"], townhall)} == {"deleted"}
    assert not decide(paul, paul.user["id"], townhall, None, "structure.view")
    assert actions(rt, townhall)[-1] == "attachment.left"
    assert notifications(rt, "claire.martin@mairie.example")[-1] == (
        "Paul Bernard left Mairie de Sainte-Exemple"
    )
    # Gone is gone, and unknown is the same answer.
    again = paul.delete(f"/v1/me/structures/{townhall}")
    missing = paul.delete("/v1/me/structures/999999")
    assert again.status_code == missing.status_code == 404
    assert again.json["detail"] == missing.json["detail"]


def test_the_principal_cannot_leave_without_a_successor(town):
    claire, townhall = town
    r = claire.delete(f"/v1/me/structures/{townhall}")
    assert (r.status_code, r.json["code"]) == (409, "user_is_principal")
    assert decide(claire, claire.user["id"], townhall, None, "users.manage")


# --- modifying a person's account -------------------------------------------------


@pytest.fixture
def owned(api, rt, town):
    """The town hall created Bob's and Carl's accounts and attached them at once,
    Carl as a secondary manager; both activated; Claire then made Bob the
    principal (she stays a simple user)."""
    claire, townhall = town
    ids = {}
    for name in ("bob", "carl"):
        ids[name] = created_for(claire, townhall, f"{name}@example.org", name.title(), "Owned")
        role = "secondary" if name == "carl" else "simple"
        assert attach(claire, townhall, user_id=ids[name], role=role).status_code == 201
    bob, carl = activate(api, "bob@example.org"), activate(api, "carl@example.org")
    r = claire.post(f"/v1/structures/{townhall}/principal", json={"user_id": ids["bob"]})
    assert r.status_code == 200, r.json
    return townhall, bob, carl, claire


def test_a_secondary_manager_cannot_edit_the_principal(owned):
    _townhall, bob, carl, _claire = owned
    r = carl.patch(f"/v1/users/{bob.user['id']}", json={"contact_email": "x@evil.example"})
    assert (r.status_code, r.json["code"]) == (403, "higher_role")
    assert bob.get("/v1/me").json["contact_email"] == "bob@example.org"
    # The principal edits the secondary (the town hall owns that account).
    r = bob.patch(f"/v1/users/{carl.user['id']}", json={"phone": "+33 1 23 45 67 89"})
    assert r.status_code == 200 and r.json["phone"] == "+33 1 23 45 67 89"


def test_an_account_attached_elsewhere_or_signed_up_is_not_the_structures_to_edit(
    api, owned, structure_of
):
    _townhall, bob, carl, claire = owned
    # Claire signed up herself: her account is no structure's.
    r = bob.patch(f"/v1/users/{claire.user['id']}", json={"last_name": "X"})
    assert (r.status_code, r.json["code"]) == (403, "account_not_owned")
    # Carl joins another structure too: the town hall no longer owns his account.
    dana = api.person("dana@example.org", "Dana", "Else")
    other = structure_of(dana, "Ailleurs")["id"]
    assert attach(dana, other, user_id=carl.user["id"]).status_code == 202
    [invitation] = carl.get("/v1/me/invitations").json["items"]
    assert carl.post(f"/v1/me/invitations/{invitation['id']}/acceptance").status_code == 200
    for manager in (bob, dana):
        r = manager.patch(f"/v1/users/{carl.user['id']}", json={"last_name": "X"})
        assert (r.status_code, r.json["code"]) == (403, "account_not_owned")
    assert carl.get("/v1/me").json["last_name"] == "Owned"
