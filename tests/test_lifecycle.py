"""Leaving the principal role, deactivation, reactivation, closing, orphans."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from sqlalchemy import select

from authz.workflows import maintenance
from models import Attachment, Structure, User
from tests.support.api import PASSWORD
from tests.support.rows import client_key, grant


def manage_check(
    api, key, user_id, structure_id, action="attachment_requests.process", revision=None
):
    body = {"user_id": user_id, "structure_id": structure_id, "action": action}
    if revision is not None:
        body["at_least_revision"] = revision
    r = api.post("/v1/checks", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.json
    return r.json


@pytest.fixture
def key(rt):
    return client_key(rt)


def roles(rt, structure_id):
    with rt.sessions() as s:
        rows = s.scalars(
            select(Attachment).where(
                Attachment.structure_id == structure_id, Attachment.status == "validated"
            )
        )
        return {(a.user_id, a.service_id): a.role for a in rows}


def set_user(rt, user_id, **values):
    with rt.sessions() as s:
        user = s.get(User, user_id)
        for k, v in values.items():
            setattr(user, k, v)
        s.commit()


def test_principal_hands_over_and_stays_as_simple_user(api, rt, key, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    st = structure_of(ada)
    grant(rt, bob.user["id"], st["id"], role="secondary")
    r = ada.post(f"/v1/structures/{st['id']}/principal", json={"login_email": "bob@example.org"})
    assert r.status_code == 200, r.json
    assert roles(rt, st["id"]) == {
        (ada.user["id"], None): "simple",
        (bob.user["id"], None): "principal",
    }
    before = manage_check(api, key, ada.user["id"], st["id"])
    assert before["allowed"] is False
    assert (
        manage_check(api, key, bob.user["id"], st["id"], "principal.designate", before["revision"])[
            "allowed"
        ]
        is True
    )
    # The former principal can no longer act as one.
    again = ada.post(f"/v1/structures/{st['id']}/principal", json={"user_id": ada.user["id"]})
    assert again.status_code == 403
    history = bob.get(
        f"/v1/structures/{st['id']}/history", query_string={"action": "principal.designated"}
    ).json["items"]
    assert len(history) == 1 and history[0]["target_user_id"] == bob.user["id"]


def test_an_unattached_active_person_can_be_designated(api, rt, structure_of):
    ada = api.person("ada@example.org")
    carl = api.person("carl@example.org")
    st = structure_of(ada)
    r = ada.post(f"/v1/structures/{st['id']}/principal", json={"user_id": carl.user["id"]})
    assert r.status_code == 200
    assert roles(rt, st["id"])[(carl.user["id"], None)] == "principal"


@pytest.mark.parametrize("role, status", [("secondary", 403), ("simple", 403)])
def test_only_the_principal_designates(api, rt, structure_of, role, status):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    st = structure_of(ada)
    grant(rt, bob.user["id"], st["id"], role=role)
    r = bob.post(f"/v1/structures/{st['id']}/principal", json={"user_id": bob.user["id"]})
    assert r.status_code == status
    assert roles(rt, st["id"])[(ada.user["id"], None)] == "principal"


def test_a_stranger_cannot_designate(api, structure_of):
    ada = api.person("ada@example.org")
    eve = api.person("eve@example.org")
    st = structure_of(ada)
    r = eve.post(f"/v1/structures/{st['id']}/principal", json={"user_id": eve.user["id"]})
    assert r.status_code == 404


def test_successor_must_be_an_active_person_other_than_the_principal(api, structure_of):
    ada = api.person("ada@example.org")
    api.signup("pending@example.org")
    st = structure_of(ada)
    r = ada.post(
        f"/v1/structures/{st['id']}/principal", json={"login_email": "pending@example.org"}
    )
    assert r.status_code == 422 and r.json["code"] == "successor_not_eligible"
    r = ada.post(f"/v1/structures/{st['id']}/principal", json={"user_id": ada.user["id"]})
    assert r.status_code == 409 and r.json["code"] == "already_principal"


def test_deactivation_needs_a_successor_for_every_structure_led(api, rt, key, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    one = structure_of(ada, "One")
    two = structure_of(ada, "Two")
    r = ada.post(
        "/v1/me/deactivation",
        json={
            "password": PASSWORD,
            "successors": [{"structure_id": one["id"], "user_id": bob.user["id"]}],
        },
    )
    assert r.status_code == 409 and r.json["code"] == "successors_required"
    assert r.json["structure_ids"] == [two["id"]]
    assert roles(rt, one["id"])[(ada.user["id"], None)] == "principal"  # nothing changed
    wrong = ada.post("/v1/me/deactivation", json={"password": "not my password", "successors": []})
    assert wrong.status_code == 401


def test_deactivated_account_grants_nothing_and_cannot_log_in(api, rt, key, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    st = structure_of(ada)
    r = ada.post(
        "/v1/me/deactivation",
        json={
            "password": PASSWORD,
            "successors": [{"structure_id": st["id"], "login_email": "bob@example.org"}],
        },
    )
    assert r.status_code == 200 and r.json["status"] == "inactive"
    assert ada.get("/v1/me").status_code == 401  # tokens revoked
    login = api.post(
        "/v1/auth/token", json={"login_email": "ada@example.org", "password": PASSWORD}
    )
    assert login.status_code == 403 and login.json["code"] == "account_not_active"
    decision = manage_check(api, key, ada.user["id"], st["id"], "structure.view")
    assert decision["allowed"] is False
    assert (
        manage_check(
            api, key, bob.user["id"], st["id"], "principal.designate", decision["revision"]
        )["allowed"]
        is True
    )


def test_centrally_managed_structures_cannot_be_left_by_deactivation(api, rt, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    st = structure_of(ada)
    with rt.sessions() as s:
        s.get(Structure, st["id"]).centrally_managed = True
        s.commit()
    r = ada.post(
        "/v1/me/deactivation",
        json={
            "password": PASSWORD,
            "successors": [{"structure_id": st["id"], "user_id": bob.user["id"]}],
        },
    )
    assert r.status_code == 409 and r.json["code"] == "centrally_managed"


def test_reactivation_within_60_days_restores_the_account(api, rt, key, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    st = structure_of(ada)
    ada.post(
        "/v1/me/deactivation",
        json={
            "password": PASSWORD,
            "successors": [{"structure_id": st["id"], "user_id": bob.user["id"]}],
        },
    )
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=59)):
        r = api.post(
            "/v1/me/reactivation", json={"login_email": "ada@example.org", "password": PASSWORD}
        )
        assert r.status_code == 200 and r.json["status"] == "active"
        assert (
            api.post(
                "/v1/auth/token", json={"login_email": "ada@example.org", "password": PASSWORD}
            ).status_code
            == 201
        )
        assert manage_check(api, key, ada.user["id"], st["id"], "structure.view")["allowed"] is True


def test_reactivation_after_60_days_is_refused_and_maintenance_closes(api, rt, structure_of):
    ada = api.person("ada@example.org")
    ada.post("/v1/me/deactivation", json={"password": PASSWORD, "successors": []})
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=61)
    with time_machine.travel(later):
        r = api.post(
            "/v1/me/reactivation", json={"login_email": "ada@example.org", "password": PASSWORD}
        )
        assert r.status_code == 409 and r.json["code"] == "reactivation_expired"
        with rt.sessions() as s:
            assert maintenance.run_maintenance(s, rt)["closed_accounts"] == 1
    with rt.sessions() as s:
        assert s.get(User, ada.user["id"]).status == "closed"


def test_reactivation_needs_the_right_password_and_an_inactive_account(api):
    api.person("ada@example.org")
    wrong = api.post(
        "/v1/me/reactivation",
        json={"login_email": "ada@example.org", "password": "wrong password!"},
    )
    assert wrong.status_code == 401
    active = api.post(
        "/v1/me/reactivation", json={"login_email": "ada@example.org", "password": PASSWORD}
    )
    assert active.status_code == 409 and active.json["code"] == "not_inactive"


def test_operator_alone_lists_and_fills_structures_without_principal(api, rt, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    op = api.person("op@example.org")
    st = structure_of(ada)
    set_user(rt, op.user["id"], platform_role="operator")
    assert op.get("/v1/structures/without-principal").json["total"] == 0
    set_user(rt, ada.user["id"], status="closed")  # e.g. closed by the operator
    assert bob.get("/v1/structures/without-principal").status_code == 403
    listed = op.get("/v1/structures/without-principal").json
    assert [s["id"] for s in listed["items"]] == [st["id"]]
    # A non-operator cannot appoint.
    assert (
        bob.post(
            f"/v1/structures/{st['id']}/principal", json={"user_id": bob.user["id"]}
        ).status_code
        == 404
    )
    r = op.post(f"/v1/structures/{st['id']}/principal", json={"user_id": bob.user["id"]})
    assert r.status_code == 200, r.json
    assert roles(rt, st["id"])[(bob.user["id"], None)] == "principal"
    assert op.get("/v1/structures/without-principal").json["total"] == 0
    # Once it has an acting principal, the operator cannot replace them.
    again = op.post(f"/v1/structures/{st['id']}/principal", json={"user_id": op.user["id"]})
    assert again.status_code == 409 and again.json["code"] == "has_principal"
