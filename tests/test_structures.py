"""Structures, services and opened spaces: who may see and change them."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from authz import roles
from models import Attachment, HistoryEntry, Structure, User
from tests.support.api import PASSWORD, activation_token
from tests.support.rows import add_attachment, revision, set_status


def test_creator_of_a_private_structure_becomes_its_principal(api, rt, structure_of):
    ada = api.person("ada@example.org")
    before = revision(rt)
    st = structure_of(ada, "Boulangerie")
    assert st["kind"] == "private" and st["status"] == "active"
    with rt.sessions() as s:
        att = s.scalar(select(Attachment).where(Attachment.structure_id == st["id"]))
        assert (att.user_id, att.role, att.status, att.service_id) == (
            ada.user["id"],
            "principal",
            "validated",
            None,
        )
        entry = s.scalar(select(HistoryEntry).where(HistoryEntry.structure_id == st["id"]))
        assert entry.action == "structure.created" and entry.actor_id == ada.user["id"]
    assert revision(rt) == before + 1
    listed = ada.get("/v1/structures").json
    assert [x["id"] for x in listed["items"]] == [st["id"]]


@pytest.mark.parametrize("value", ["73282932000075", "1234", "7328293200007A", ""])
def test_invalid_siret_is_refused(api, value):
    ada = api.person("ada@example.org")
    r = ada.post(
        "/v1/structures",
        json={"identifier_type": "SIRET", "identifier_value": value, "designation": "X"},
    )
    assert r.status_code == 422
    assert r.content_type == "application/problem+json"


def test_siret_with_spaces_is_normalised(api):
    ada = api.person("ada@example.org")
    r = ada.post(
        "/v1/structures",
        json={
            "identifier_type": "SIRET",
            "identifier_value": "732 829 320 00074",
            "designation": "X",
        },
    )
    assert r.status_code == 201 and r.json["identifier_value"] == "73282932000074"


def test_identifier_is_unique_per_type(api, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    structure_of(ada)
    r = bob.post(
        "/v1/structures",
        json={
            "identifier_type": "SIRET",
            "identifier_value": "73282932000074",
            "designation": "Copycat",
        },
    )
    assert r.status_code == 409 and r.json["code"] == "identifier_taken"
    other_type = bob.post(
        "/v1/structures",
        json={
            "identifier_type": "AUTRE",
            "identifier_value": "73282932000074",
            "designation": "Other registry",
        },
    )
    assert other_type.status_code == 201


def test_lookup_finds_only_an_active_structure_by_its_exact_identifier(api, rt, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    st = structure_of(ada)

    def find(value: str):
        return bob.get(
            "/v1/structures/lookup",
            query_string={"identifier_type": "SIRET", "identifier_value": value},
        )

    assert find(st["identifier_value"]).status_code == 200
    assert find("35600000000048").status_code == 404  # valid, but nobody has it
    assert find(st["identifier_value"][:10]).status_code == 422  # no partial match
    assert (
        api.get(
            "/v1/structures/lookup",
            query_string={"identifier_type": "SIRET", "identifier_value": st["identifier_value"]},
        ).status_code
        == 401
    )
    set_status(rt, Structure, st["id"], "inactive")
    assert find(st["identifier_value"]).status_code == 404


def test_a_stranger_can_neither_see_nor_touch_a_structure(api, structure_of):
    ada = api.person("ada@example.org")
    eve = api.person("eve@example.org")
    st = structure_of(ada)
    sid = st["id"]
    assert eve.get("/v1/structures").json["total"] == 0
    for call in (
        lambda: eve.get(f"/v1/structures/{sid}"),
        lambda: eve.patch(f"/v1/structures/{sid}", json={"designation": "Pwned"}),
        lambda: eve.get(f"/v1/structures/{sid}/services"),
        lambda: eve.post(f"/v1/structures/{sid}/services", json={"code": "X", "label": "X"}),
        lambda: eve.get(f"/v1/structures/{sid}/spaces"),
        lambda: eve.put(f"/v1/structures/{sid}/spaces", json={"spaces": []}),
    ):
        r = call()
        assert r.status_code == 404, r.json
        assert r.json["code"] == "not_found"
    # Unknown and invisible answer the same.
    assert eve.get("/v1/structures/999999").json["code"] == "not_found"
    assert ada.get(f"/v1/structures/{sid}").json["designation"] == "ACME SARL"


def test_manager_of_one_structure_cannot_reach_another(api, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    mine = structure_of(ada, "Ada Corp")
    theirs = structure_of(bob, "Bob Corp")
    assert ada.get(f"/v1/structures/{theirs['id']}").status_code == 404
    assert ada.patch(f"/v1/structures/{theirs['id']}", json={"designation": "x"}).status_code == 404
    assert [s["id"] for s in ada.get("/v1/structures").json["items"]] == [mine["id"]]


@pytest.mark.parametrize(
    "role, can_view, can_manage",
    [
        ("principal", True, True),
        ("secondary", True, True),
        ("simple", True, False),
        ("technical", True, False),
    ],
)
def test_only_managers_modify_a_structure(api, rt, structure_of, role, can_view, can_manage):
    owner = api.person("owner@example.org")
    member = api.person("member@example.org")
    st = structure_of(owner)
    if role == "principal":  # one principal per structure: hand it over
        set_status(rt, Attachment, 1, "deleted")
    add_attachment(rt, member.user["id"], st["id"], role)
    view = member.get(f"/v1/structures/{st['id']}")
    assert view.status_code == (200 if can_view else 404)
    patch = member.patch(f"/v1/structures/{st['id']}", json={"designation": "Renamed"})
    assert patch.status_code == (200 if can_manage else 403)
    if not can_manage:
        assert patch.json["code"] == "action_not_allowed"
        svc = member.post(f"/v1/structures/{st['id']}/services", json={"code": "S", "label": "S"})
        assert svc.status_code == 403


@pytest.mark.parametrize("status", ["pending", "refused", "deactivated", "deleted"])
def test_attachments_not_validated_grant_nothing(api, rt, structure_of, status):
    owner = api.person("owner@example.org")
    member = api.person("member@example.org")
    st = structure_of(owner)
    add_attachment(rt, member.user["id"], st["id"], "secondary", status=status)
    assert member.get(f"/v1/structures/{st['id']}").status_code == 404


def test_attachments_outside_their_dates_grant_nothing(api, rt, structure_of):
    owner = api.person("owner@example.org")
    future = api.person("future@example.org")
    past = api.person("past@example.org")
    st = structure_of(owner)
    today = roles.today()
    add_attachment(
        rt, future.user["id"], st["id"], "secondary", valid_from=today + dt.timedelta(days=2)
    )
    add_attachment(
        rt,
        past.user["id"],
        st["id"],
        "secondary",
        valid_from=today - dt.timedelta(days=9),
        valid_until=today - dt.timedelta(days=1),
    )
    assert future.get(f"/v1/structures/{st['id']}").status_code == 404
    assert past.get(f"/v1/structures/{st['id']}").status_code == 404


def test_a_service_attachment_gives_the_role_too(api, rt, structure_of):
    owner = api.person("owner@example.org")
    member = api.person("member@example.org")
    st = structure_of(owner)
    svc = owner.post(
        f"/v1/structures/{st['id']}/services", json={"code": "S1", "label": "One"}
    ).json
    add_attachment(rt, member.user["id"], st["id"], "simple", service_id=svc["id"])
    assert member.get(f"/v1/structures/{st['id']}").status_code == 200


def test_inactive_structure_is_visible_but_not_modifiable(api, rt, structure_of):
    owner = api.person("owner@example.org")
    st = structure_of(owner)
    set_status(rt, Structure, st["id"], "inactive")
    assert owner.get(f"/v1/structures/{st['id']}").status_code == 200
    r = owner.patch(f"/v1/structures/{st['id']}", json={"designation": "New"})
    assert r.status_code == 403
    assert (
        owner.post(
            f"/v1/structures/{st['id']}/services", json={"code": "S", "label": "S"}
        ).status_code
        == 403
    )


def test_manager_updates_designation_and_settings(api, rt, structure_of):
    owner = api.person("owner@example.org")
    st = structure_of(owner)
    r = owner.patch(
        f"/v1/structures/{st['id']}",
        json={
            "designation": "New name",
            "invoice_requires_service": True,
            "legal_commitment_required": True,
            "default_spaces": ["issued_invoices"],
        },
    )
    assert r.status_code == 200, r.json
    assert r.json["designation"] == "New name"
    assert r.json["invoice_requires_service"] and r.json["legal_commitment_required"]
    assert r.json["default_spaces"] == ["issued_invoices"]
    with rt.sessions() as s:
        entry = s.scalars(select(HistoryEntry).where(HistoryEntry.action == "structure.updated"))
        entry = entry.one()
        assert entry.before["designation"] == "ACME SARL"
        assert entry.after["designation"] == "New name"


def test_public_only_space_cannot_be_a_default_of_a_private_structure(api, structure_of):
    owner = api.person("owner@example.org")
    st = structure_of(owner)
    r = owner.patch(f"/v1/structures/{st['id']}", json={"default_spaces": ["received_invoices"]})
    assert r.status_code == 422 and r.json["code"] == "public_only_space"
    r = owner.patch(f"/v1/structures/{st['id']}", json={"default_spaces": ["no_such_space"]})
    assert r.status_code == 422 and r.json["code"] == "unknown_space"


def test_a_default_space_must_be_opened_on_the_structure(api, structure_of):
    """A default space that is not opened would give requests that are refused:
    422 space_not_opened, until the space is opened."""
    owner = api.person("owner@example.org")
    st = structure_of(owner)
    wanted = {"default_spaces": ["invoices_to_validate"]}
    r = owner.patch(f"/v1/structures/{st['id']}", json=wanted)
    assert (r.status_code, r.json["code"]) == (422, "space_not_opened"), r.json
    assert owner.get(f"/v1/structures/{st['id']}").json["default_spaces"] == []
    spaces = [
        {"space": "my_account", "service_id": None},
        {"space": "invoices_to_validate", "service_id": None},
    ]
    opened = owner.put(f"/v1/structures/{st['id']}/spaces", json={"spaces": spaces})
    assert opened.status_code == 200, opened.json
    r = owner.patch(f"/v1/structures/{st['id']}", json=wanted)
    assert r.status_code == 200 and r.json["default_spaces"] == ["invoices_to_validate"], r.json


def test_services_are_created_renamed_and_deactivated(api, rt, structure_of):
    owner = api.person("owner@example.org")
    st = structure_of(owner)
    base = f"/v1/structures/{st['id']}/services"
    created = owner.post(base, json={"code": "COMPTA", "label": "Comptabilité"})
    assert created.status_code == 201
    dup = owner.post(base, json={"code": "COMPTA", "label": "Again"})
    assert dup.status_code == 409 and dup.json["code"] == "service_code_taken"
    sid = created.json["id"]
    rev = revision(rt)
    renamed = owner.patch(f"{base}/{sid}", json={"label": "Compta"})
    assert renamed.json["label"] == "Compta"
    assert revision(rt) == rev  # a label grants nothing
    off = owner.patch(f"{base}/{sid}", json={"active": False})
    assert off.json["active"] is False
    assert revision(rt) == rev + 1  # an inactive service grants nothing: rights changed
    assert owner.get(base, query_string={"active": "false"}).json["total"] == 1
    assert owner.get(base, query_string={"active": "true"}).json["total"] == 0


def test_a_service_of_another_structure_is_not_found(api, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    a = structure_of(ada)
    b = structure_of(bob)
    svc = bob.post(f"/v1/structures/{b['id']}/services", json={"code": "B", "label": "B"}).json
    r = ada.patch(f"/v1/structures/{a['id']}/services/{svc['id']}", json={"label": "x"})
    assert r.status_code == 404


def test_new_private_structure_opens_default_spaces_but_no_public_only_one(api, structure_of):
    owner = api.person("owner@example.org")
    st = structure_of(owner)
    spaces = {e["space"] for e in owner.get(f"/v1/structures/{st['id']}/spaces").json["spaces"]}
    assert "issued_invoices" in spaces
    assert "received_invoices" not in spaces and "received_solicitations" not in spaces


def test_spaces_are_opened_on_the_structure_and_on_services(api, rt, structure_of):
    owner = api.person("owner@example.org")
    st = structure_of(owner)
    svc = owner.post(
        f"/v1/structures/{st['id']}/services", json={"code": "S1", "label": "One"}
    ).json
    rev = revision(rt)
    wanted = [
        {"space": "issued_invoices", "service_id": None},
        {"space": "works_invoices", "service_id": svc["id"]},
    ]
    r = owner.put(f"/v1/structures/{st['id']}/spaces", json={"spaces": wanted})
    assert r.status_code == 200, r.json
    got = owner.get(f"/v1/structures/{st['id']}/spaces").json["spaces"]
    assert sorted(got, key=lambda e: e["space"]) == wanted
    assert revision(rt) == rev + 1
    same = owner.put(f"/v1/structures/{st['id']}/spaces", json={"spaces": wanted})
    assert same.status_code == 200 and revision(rt) == rev + 1  # no change, no bump


@pytest.mark.parametrize(
    "entry, code",
    [
        ({"space": "received_invoices"}, "public_only_space"),
        ({"space": "nope"}, "unknown_space"),
        ({"space": "issued_invoices", "service_id": 999}, "unknown_service"),
    ],
)
def test_refused_space_openings(api, structure_of, entry, code):
    owner = api.person("owner@example.org")
    st = structure_of(owner)
    r = owner.put(f"/v1/structures/{st['id']}/spaces", json={"spaces": [entry]})
    assert r.status_code == 422 and r.json["code"] == code


def test_structure_search_filters_and_pages(api, structure_of):
    owner = api.person("owner@example.org")
    for name in ("Alpha", "Beta", "Gamma"):
        structure_of(owner, name)
    r = owner.get("/v1/structures", query_string={"q": "alp"})
    assert [s["designation"] for s in r.json["items"]] == ["Alpha"]
    page = owner.get("/v1/structures", query_string={"page_size": 2, "page": 2}).json
    assert page["total"] == 3 and len(page["items"]) == 1 and page["page"] == 2


def test_page_size_is_capped(api, rt, structure_of):
    owner = api.person("owner@example.org")
    structure_of(owner)
    r = owner.get("/v1/structures", query_string={"page_size": 10_000})
    assert r.json["page_size"] == rt.settings.page_size_max


def test_pending_user_attachment_grants_nothing_even_if_validated(api, rt, structure_of):
    owner = api.person("owner@example.org")
    member = api.person("member@example.org")
    st = structure_of(owner)
    add_attachment(rt, member.user["id"], st["id"], "secondary")
    assert member.get(f"/v1/structures/{st['id']}").status_code == 200
    set_status(rt, User, member.user["id"], "inactive")
    assert member.get(f"/v1/structures/{st['id']}").status_code == 401


def make_operator(rt, user_id):
    with rt.sessions() as s:
        s.get(User, user_id).platform_role = "operator"
        s.commit()


def test_only_the_operator_registers_a_public_structure(api, rt):
    ada = api.person("ada@example.org")
    body = {
        "identifier_type": "SIRET",
        "identifier_value": "35600000000048",
        "designation": "Mairie",
        "kind": "public",
        "principal_email": "maire@example.org",
    }
    refused = ada.post("/v1/structures", json=body)
    assert refused.status_code == 403 and refused.json["code"] == "operator_only"
    make_operator(rt, ada.user["id"])
    created = ada.post("/v1/structures", json=body)
    assert created.status_code == 201, created.json
    assert created.json["kind"] == "public"
    # The operator does not manage it: the named principal does (after activation).
    assert ada.get(f"/v1/structures/{created.json['id']}").status_code == 404
    maire = api.client.post(
        "/v1/accounts/activation",
        json={"token": activation_token(rt, "maire@example.org"), "password": PASSWORD},
    )
    assert maire.status_code == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"kind": "private", "principal_email": "x@example.org"},
        {"kind": "public", "invoice_requires_service": True},
    ],
)
def test_fields_of_the_other_kind_are_refused(api, extra):
    ada = api.person("ada@example.org")
    r = ada.post(
        "/v1/structures",
        json={
            "identifier_type": "SIRET",
            "identifier_value": "35600000000048",
            "designation": "X",
            **extra,
        },
    )
    assert r.status_code == 422


@pytest.mark.parametrize("term", ["etablissement", "ÉTABLISSEMENT", "établissement public", "Etab"])
def test_structure_search_ignores_case_and_accents(api, structure_of, term):
    """Issue 15: `etablissement` finds "Établissement…"."""
    owner = api.person("owner@example.org")
    structure_of(owner, "Établissement public de Sainte-Exemple")
    structure_of(owner, "Boulangerie")
    r = owner.get("/v1/structures", query_string={"q": term})
    assert r.status_code == 200, r.json
    assert [s["designation"] for s in r.json["items"]] == ["Établissement public de Sainte-Exemple"]
