"""User administration by managers: search, read, modify, activation mails,
CSV export, a structure's users, and accounts created by a manager."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import select, text

from authz import roles
from authz.config import load_settings
from authz.db import make_engine, upgrade
from authz.textkeys import fold
from authz.workflows import users
from models import User
from tests.support.api import PASSWORD, activation_token, attach_directly, outbox
from tests.support.backend import BACKEND
from tests.support.rows import attachment_row, user_row


def _account(api, email: str, first: str = "Ada", last: str = "Lovelace", **extra) -> int:
    """A pending account (signed up, never activated); its id."""
    r = api.signup(email, first, last, **extra)
    assert r.status_code == 201, r.json
    return r.json["id"]


def _search(caller, **criteria) -> dict:
    r = caller.get("/v1/users", query_string=criteria)
    assert r.status_code == 200, r.json
    return r.json


def _ids(page: dict) -> list[int]:
    return [item["id"] for item in page["items"]]


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data().decode("utf-8"))))


@pytest.fixture
def world(api, structure_of):
    """ada manages "Boulangerie Dupont" where Hélène Dupré is a simple user
    (her account, still pending, created by ada for it); eve manages "Garage Martin"."""
    ada = api.person("ada@example.org", "Ada", "Lovelace")
    eve = api.person("eve@example.org", "Eve", "Martin")
    bakery = structure_of(ada, "Boulangerie Dupont")
    garage = structure_of(eve, "Garage Martin")
    # Created by ada for the bakery, which owns the account (and may modify it).
    created = ada.post(
        "/v1/accounts",
        json={
            "structure_id": bakery["id"],
            "login_email": "helene@example.org",
            "first_name": "Hélène",
            "last_name": "Dupré",
        },
    )
    assert created.status_code == 201, created.json
    helene = created.json["id"]
    attach_directly(ada, bakery["id"], helene)
    return {
        "ada": ada,
        "eve": eve,
        "bakery": bakery["id"],
        "garage": garage["id"],
        "helene": helene,
    }


# --- search ---------------------------------------------------------------------


def test_search_needs_at_least_one_criterion(world):
    r = world["ada"].get("/v1/users")
    assert r.status_code == 422 and r.json["code"] == "criterion_required"
    blank = world["ada"].get("/v1/users", query_string={"last_name": "   "})
    assert blank.status_code == 422 and blank.json["code"] == "criterion_required"


@pytest.mark.parametrize(
    "criterion, term",
    [
        ("first_name", "helene"),
        ("first_name", "HELENE"),
        ("first_name", "Hélène"),
        ("first_name", "élè"),
        ("last_name", "dupre"),
        ("last_name", "DUPRÉ"),
        ("login_email", "HELENE@EXAMPLE"),
    ],
)
def test_search_ignores_case_and_accents(world, criterion, term):
    assert _ids(_search(world["ada"], **{criterion: term})) == [world["helene"]]


@pytest.mark.parametrize("term", ["boulangerie dupont", "DUPONT", "Bôulangérie"])
def test_search_by_designation_ignores_case_and_accents(world, term):
    found = _ids(_search(world["ada"], designation=term))
    assert sorted(found) == sorted([world["ada"].user["id"], world["helene"]])


def test_search_terms_are_substrings_not_patterns(world):
    assert _search(world["ada"], last_name="%")["total"] == 0
    assert _search(world["ada"], last_name="_")["total"] == 0


def test_every_criterion_given_must_match(world):
    assert _ids(_search(world["ada"], first_name="helene", status="pending")) == [world["helene"]]
    assert _search(world["ada"], first_name="helene", status="active")["total"] == 0
    assert _search(world["ada"], first_name="helene", designation="garage")["total"] == 0


def test_search_by_status_finds_the_pending_accounts(world):
    assert _ids(_search(world["ada"], status="pending")) == [world["helene"]]
    active = _ids(_search(world["ada"], status="active"))
    assert active == [world["ada"].user["id"]]


def test_a_manager_of_another_structure_finds_none_of_these_users(world):
    eve = world["eve"]
    for criteria in (
        {"first_name": "helene"},
        {"status": "pending"},
        {"designation": "boulangerie"},
        {"login_email": "example.org"},
    ):
        assert world["helene"] not in _ids(_search(eve, **criteria))
    assert _ids(_search(eve, login_email="example.org")) == [eve.user["id"]]


def test_a_simple_user_manages_nobody(api, world):
    bob = api.person("bob@example.org", "Bob", "Durand")
    attach_directly(world["ada"], world["bakery"], bob.user["id"])
    assert _search(bob, first_name="helene")["total"] == 0
    assert bob.get(f"/v1/users/{world['helene']}").status_code == 404


def test_search_by_service_counts_whole_structure_attachments(api, world):
    ada, bakery = world["ada"], world["bakery"]
    compta = ada.post(
        f"/v1/structures/{bakery}/services", json={"code": "COMPTA", "label": "Comptabilité"}
    ).json
    vente = ada.post(
        f"/v1/structures/{bakery}/services", json={"code": "VENTE", "label": "Vente"}
    ).json
    accountant = _account(api, "paul@example.org", "Paul", "Chiffre")
    seller = _account(api, "sam@example.org", "Sam", "Vend")
    attach_directly(ada, bakery, accountant, service_ids=[compta["id"]])
    attach_directly(ada, bakery, seller, service_ids=[vente["id"]])
    by_label = set(_ids(_search(ada, service="comptabilite")))
    assert by_label == {accountant, world["helene"], ada.user["id"]}  # the last two: whole
    assert set(_ids(_search(ada, service="vente", status="pending"))) == {seller, world["helene"]}
    assert _ids(_search(ada, service="compta", last_name="vend")) == []


def test_search_is_paginated_in_name_order(api, world):
    ada, bakery = world["ada"], world["bakery"]
    for email, last in (("z@example.org", "Zola"), ("b@example.org", "Balzac")):
        attach_directly(ada, bakery, _account(api, email, "Émile", last))
    first = _search(ada, status="pending", page_size=2)
    second = _search(ada, status="pending", page_size=2, page=2)
    assert first["total"] == second["total"] == 3
    names = [i["last_name"] for i in first["items"] + second["items"]]
    assert names == ["Balzac", "Dupré", "Zola"]
    # Past the last page: no item, and the total all the same (counted apart).
    past = _search(ada, status="pending", page_size=2, page=5)
    assert (past["items"], past["total"]) == ([], 3)
    assert _search(ada, last_name="nobody-here")["total"] == 0


def test_renamed_structures_and_users_are_found_by_their_new_names(world):
    ada = world["ada"]
    r = ada.patch(f"/v1/structures/{world['bakery']}", json={"designation": "Pâtisserie Noël"})
    assert r.status_code == 200
    assert _ids(_search(ada, designation="patisserie noel", first_name="helene")) == [
        world["helene"]
    ]
    assert ada.patch(f"/v1/users/{world['helene']}", json={"last_name": "Gaïa"}).status_code == 200
    assert _ids(_search(ada, last_name="gaia")) == [world["helene"]]
    assert _search(ada, last_name="dupre")["total"] == 0


# --- one user ---------------------------------------------------------------------


def test_a_user_is_invisible_to_a_manager_of_another_structure(world):
    eve, helene = world["eve"], world["helene"]
    assert eve.get(f"/v1/users/{helene}").status_code == 404
    assert eve.get(f"/v1/users/{helene}/structures").status_code == 404
    assert eve.patch(f"/v1/users/{helene}", json={"first_name": "X"}).status_code == 404
    assert eve.get("/v1/users/999999").status_code == 404


def test_a_removed_attachment_hides_the_user(world):
    ada, helene = world["ada"], world["helene"]
    assert ada.delete(f"/v1/structures/{world['bakery']}/attachments/{helene}").status_code == 200
    assert ada.get(f"/v1/users/{helene}").status_code == 404
    assert _search(ada, first_name="helene")["total"] == 0


def test_a_pending_request_makes_the_requester_visible_with_the_request_to_open(api, world):
    ada = world["ada"]
    carol = api.person("carol@example.org", "Carol", "Petit")
    req = carol.post("/v1/attachment-requests", json={"structure_id": world["bakery"]}).json
    r = ada.get(f"/v1/users/{carol.user['id']}")
    assert r.status_code == 200
    assert r.json["user"]["login_email"] == "carol@example.org"
    assert r.json["pending_attachment_request_ids"] == [req["id"]]
    assert ada.get(f"/v1/attachment-requests/{req['id']}").status_code == 200
    assert world["eve"].get(f"/v1/users/{carol.user['id']}").status_code == 404


def test_user_structures_lists_only_the_structures_the_caller_manages(world):
    ada, eve, helene = world["ada"], world["eve"], world["helene"]
    attach_directly(eve, world["garage"], helene, role="secondary")
    r = ada.get(f"/v1/users/{helene}/structures")
    assert r.status_code == 200 and r.json["total"] == 1
    [item] = r.json["items"]
    assert item["structure"]["designation"] == "Boulangerie Dupont"
    assert item["attachments"][0]["status"] == "validated"
    assert item["attachments"][0]["service_id"] is None
    assert item["role"] == "simple"
    [garage] = eve.get(f"/v1/users/{helene}/structures").json["items"]
    assert garage["structure"]["designation"] == "Garage Martin"


def test_anyone_lists_their_own_structures_whatever_their_role(api, world):
    """A simple user is not a manager, yet sees their own memberships (issue
    15: it was a 404); another user's stay invisible to them."""
    ada, eve = world["ada"], world["eve"]
    simon = api.person("simon@example.org", "Simon", "Simple")
    attach_directly(ada, world["bakery"], simon.user["id"])
    attach_directly(eve, world["garage"], simon.user["id"], role="secondary")
    r = simon.get(f"/v1/users/{simon.user['id']}/structures")
    assert r.status_code == 200, r.json
    assert [(i["structure"]["designation"], i["role"]) for i in r.json["items"]] == [
        ("Boulangerie Dupont", "simple"),
        ("Garage Martin", "secondary"),
    ]
    assert simon.get(f"/v1/users/{world['helene']}/structures").status_code == 404


def test_structure_users_lists_attached_users_roles_and_statuses(api, world):
    ada, bakery = world["ada"], world["bakery"]
    carol = api.person("carol@example.org", "Carol", "Petit")
    carol.post("/v1/attachment-requests", json={"structure_id": bakery})
    r = ada.get(f"/v1/structures/{bakery}/users")
    assert r.status_code == 200 and r.json["total"] == 3
    by_email = {i["user"]["login_email"]: i for i in r.json["items"]}
    assert by_email["ada@example.org"]["role"] == "principal"
    assert by_email["carol@example.org"]["attachments"][0]["status"] == "pending"
    assert by_email["carol@example.org"]["role"] is None
    pending = ada.get(f"/v1/structures/{bakery}/users", query_string={"status": "pending"})
    assert [i["user"]["id"] for i in pending.json["items"]] == [carol.user["id"]]


def test_only_the_structure_managers_list_its_users(api, world):
    bob = api.person("bob@example.org", "Bob", "Durand")
    attach_directly(world["ada"], world["bakery"], bob.user["id"])
    assert bob.get(f"/v1/structures/{world['bakery']}/users").status_code == 403
    assert world["eve"].get(f"/v1/structures/{world['bakery']}/users").status_code == 404


# --- modify -----------------------------------------------------------------------


def test_a_manager_changes_contact_email_names_and_phone(rt, world):
    ada, helene = world["ada"], world["helene"]
    r = ada.patch(
        f"/v1/users/{helene}",
        json={
            "contact_email": "Contact@Example.org",
            "first_name": " Léna ",
            "phone": "0102030405",
        },
    )
    assert r.status_code == 200, r.json
    assert r.json["contact_email"] == "contact@example.org"
    assert r.json["first_name"] == "Léna" and r.json["phone"] == "0102030405"
    assert r.json["login_email"] == "helene@example.org"
    history = ada.get(
        f"/v1/structures/{world['bakery']}/history", query_string={"action": "user.updated"}
    ).json["items"]
    assert [(e["target_user_id"], e["actor_id"]) for e in history] == [(helene, ada.user["id"])]
    told = [m for m in outbox(rt, "helene@example.org") if m.kind == "notification"]
    assert told and "contact_email" in told[-1].body


def test_the_login_email_cannot_be_changed(rt, world):
    r = world["ada"].patch(
        f"/v1/users/{world['helene']}", json={"login_email": "other@example.org"}
    )
    assert r.status_code == 422 and "login_email" in r.json["errors"]
    with rt.sessions() as s:
        assert s.get(User, world["helene"]).login_email == "helene@example.org"


def test_technical_users_are_not_modified_here(rt, world):
    with rt.sessions() as s:
        robot = user_row("robot@example.org", "ERP", "Robot", kind="technical")
        s.add(robot)
        s.flush()
        s.add(attachment_row(robot.id, world["bakery"], "technical"))
        s.commit()
        robot_id = robot.id
    r = world["ada"].patch(f"/v1/users/{robot_id}", json={"last_name": "Hacked"})
    assert r.status_code == 403 and r.json["code"] == "technical_user"


# --- activation mails -------------------------------------------------------------


def test_activation_mail_is_resent_only_to_pending_users_and_old_links_die(api, rt, world):
    ada, helene = world["ada"], world["helene"]
    old = activation_token(rt, "helene@example.org")
    outsider = _account(api, "out@example.org")  # pending, but not a user of ada's
    r = ada.post(
        "/v1/users/activation-emails", json={"ids": [helene, ada.user["id"], outsider, 999999]}
    )
    assert r.status_code == 200
    assert [(o["id"], o["ok"], o["code"]) for o in r.json["results"]] == [
        (helene, True, None),
        (ada.user["id"], False, "account_not_pending"),
        (outsider, False, "not_found"),
        (999999, False, "not_found"),
    ]
    assert len([m for m in outbox(rt, "out@example.org") if m.kind == "activation"]) == 1
    new = activation_token(rt, "helene@example.org")
    assert new != old
    dead = api.post("/v1/accounts/activation", json={"token": old, "password": PASSWORD})
    assert dead.status_code == 422 and dead.json["code"] == "activation_link_invalid"
    alive = api.post("/v1/accounts/activation", json={"token": new, "password": PASSWORD})
    assert alive.status_code == 200 and alive.json["status"] == "active"


# --- CSV export -------------------------------------------------------------------


def test_export_is_a_streamed_utf8_csv_with_a_header(world):
    r = world["ada"].post("/v1/users/export", json={"ids": [world["helene"]]})
    assert r.status_code == 200
    assert r.is_streamed and "Content-Length" not in r.headers
    assert r.mimetype == "text/csv" and r.mimetype_params["charset"] == "utf-8"
    assert r.headers["Content-Disposition"] == 'attachment; filename="users.csv"'
    header, *rows = _csv(r)
    assert header == list(users.EXPORT_COLUMNS)
    [row] = [dict(zip(header, row, strict=True)) for row in rows]
    assert (row["first_name"], row["last_name"]) == ("Hélène", "Dupré")
    assert row["structure_designation"] == "Boulangerie Dupont"
    assert (row["role"], row["attachment_status"]) == ("simple", "validated")
    assert row["valid_from"] == roles.today().isoformat() and row["valid_until"] == ""


def test_export_neutralises_cells_a_spreadsheet_would_run(api, world):
    ada = world["ada"]
    evil = _account(
        api, "evil@example.org", "+cmd", '=HYPERLINK("http://x.test","y")', phone="-1+1"
    )
    attach_directly(ada, world["bakery"], evil)
    header, row = _csv(ada.post("/v1/users/export", json={"ids": [evil]}))
    cells = dict(zip(header, row, strict=True))
    assert cells["last_name"] == '\'=HYPERLINK("http://x.test","y")'
    assert cells["first_name"] == "'+cmd" and cells["phone"] == "'-1+1"


@pytest.mark.parametrize(
    "value, cell",
    [
        ("=1+1", "'=1+1"),
        ("+33", "'+33"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Dupré", "Dupré"),
        ("a=b", "a=b"),
        (None, ""),
    ],
)
def test_formula_starts_are_neutralised(value, cell):
    assert users.neutralize(value) == cell


def test_export_refuses_every_id_if_one_is_not_a_user_of_the_caller(api, world):
    stranger = _account(api, "stranger@example.org")
    attach_directly(world["eve"], world["garage"], stranger)
    r = world["ada"].post("/v1/users/export", json={"ids": [world["helene"], stranger]})
    assert r.status_code == 404 and r.content_type == "application/problem+json"
    assert "helene" not in r.get_data(as_text=True)
    assert world["eve"].post("/v1/users/export", json={"ids": [world["helene"]]}).status_code == 404


def test_export_is_produced_chunk_by_chunk(api, rt, world, monkeypatch):
    ada = world["ada"]
    ids = [world["helene"]]
    for n in range(3):
        ids.append(_account(api, f"u{n}@example.org", "User", f"Number{n}"))
        attach_directly(ada, world["bakery"], ids[-1])
    monkeypatch.setattr(users, "EXPORT_CHUNK", 2)
    with rt.sessions() as s:
        actor = s.get(User, ada.user["id"])
        chunks = users.export_csv(s, rt, actor, ids)
        assert not isinstance(chunks, (str, list))
        produced = list(chunks)
    assert len(produced) == 3  # the header, then two chunks of two users
    rows = list(csv.reader(io.StringIO("".join(produced))))[1:]
    assert [int(r[0]) for r in rows] == ids


# --- accounts created by a manager ------------------------------------------------


def test_a_manager_creates_an_account_that_is_mailed_and_then_attached(api, rt, world):
    ada, bakery = world["ada"], world["bakery"]
    r = ada.post(
        "/v1/accounts",
        json={
            "structure_id": bakery,
            "login_email": "new@example.org",
            "contact_email": "desk@example.org",
            "first_name": "Noé",
            "last_name": "Neuf",
        },
    )
    assert r.status_code == 201, r.json
    assert r.json["status"] == "pending" and r.json["contact_email"] == "desk@example.org"
    new_id = r.json["id"]
    assert [m.kind for m in outbox(rt, "new@example.org")] == ["activation"]
    # The newest entry (the world's Hélène was created the same way before).
    entry = ada.get(
        f"/v1/structures/{bakery}/history", query_string={"action": "account.created"}
    ).json["items"][0]
    assert (entry["target_user_id"], entry["actor_id"]) == (new_id, ada.user["id"])
    attach_directly(ada, bakery, new_id)
    assert _ids(_search(ada, first_name="noe")) == [new_id]
    token = activation_token(rt, "new@example.org")
    assert (
        api.post("/v1/accounts/activation", json={"token": token, "password": PASSWORD}).status_code
        == 200
    )


def test_a_simple_user_cannot_create_accounts_for_a_structure(api, rt, world):
    bob = api.person("bob@example.org", "Bob", "Durand")
    attach_directly(world["ada"], world["bakery"], bob.user["id"])
    body = {
        "structure_id": world["bakery"],
        "login_email": "x@example.org",
        "first_name": "X",
        "last_name": "Y",
    }
    assert bob.post("/v1/accounts", json=body).status_code == 403
    assert world["eve"].post("/v1/accounts", json=body).status_code == 404
    assert outbox(rt, "x@example.org") == []


def test_a_logged_in_caller_names_the_structure_of_the_account(world):
    r = world["ada"].post(
        "/v1/accounts", json={"login_email": "x@example.org", "first_name": "X", "last_name": "Y"}
    )
    assert r.status_code == 422 and r.json["code"] == "structure_required"


def test_a_logged_out_caller_cannot_act_for_a_structure(api, world):
    r = api.post(
        "/v1/accounts",
        json={
            "structure_id": world["bakery"],
            "login_email": "x@example.org",
            "first_name": "X",
            "last_name": "Y",
        },
    )
    assert r.status_code == 401


# --- search keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, key",
    [
        ("  Hélène  ÉTIENNE ", "helene etienne"),
        ("Straße", "strasse"),
        ("ﬁnance", "finance"),
        ("Ǆemal", "dzemal"),
        (None, ""),
    ],
)
def test_search_keys_fold_case_accents_and_compatibility_forms(value, key):
    assert fold(value) == key


@pytest.mark.skipif(BACKEND != "sqlite", reason="migrates its own SQLite file")
def test_the_migration_fills_the_keys_of_existing_rows(tmp_path: Path):
    engine = make_engine(load_settings({"database_url": f"sqlite:///{tmp_path / 'm.db'}"}))
    upgrade(engine, "0003")
    now = "2026-01-01 00:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, login_email, contact_email, last_name, first_name, kind,"
                " status, created_at, updated_at) VALUES (1, 'h@example.org', 'h@example.org',"
                " 'Dupré', 'Hélène', 'person', 'active', :now, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO structures (id, identifier_type, identifier_value, designation, kind,"
                " status, centrally_managed, invoice_requires_service, legal_commitment_required,"
                " created_at, updated_at) VALUES (1, 'AUTRE', 'X1', 'Pâtisserie Noël', 'private',"
                " 'active', 0, 0, 0, :now, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO services (id, structure_id, code, label, active, created_at,"
                " updated_at) VALUES (1, 1, 'CPT', 'Comptabilité', 1, :now, :now)"
            ),
            {"now": now},
        )
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(select(User.last_name_key, User.first_name_key)).one() == (
            "dupre",
            "helene",
        )
        assert conn.execute(text("SELECT designation_key FROM structures")).scalar() == (
            "patisserie noel"
        )
        assert conn.execute(text("SELECT code_key, label_key FROM services")).one() == (
            "cpt",
            "comptabilite",
        )
    engine.dispose()
