"""Technical users: created and reset by the principal only, a secret shown once
and stored hashed, tokens from login + secret, expiry, and no management ever."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from authz.demo import CASH_REGISTER, load_demo
from models import (
    Attachment,
    AuthToken,
    Base,
    HistoryEntry,
    Structure,
    TechnicalCredential,
    User,
    utcnow,
)
from tests.support.api import PASSWORD, Api, attach_directly, outbox

LOGIN_RE = re.compile(r"^[0-9a-f]{16}@technical\.invalid$")


def create(owner: Api, structure_id: int, label: str = "Cash register", **kw):
    return owner.post(f"/v1/structures/{structure_id}/technical-users", json={"label": label}, **kw)


def created(owner: Api, structure_id: int, label: str = "Cash register") -> dict:
    r = create(owner, structure_id, label)
    assert r.status_code == 201, r.json
    return r.json


def get_token(api: Api, login: str, secret: str):
    return api.post("/v1/auth/technical-token", json={"login": login, "secret": secret})


def as_technical(api: Api, tech: dict) -> Api:
    r = get_token(api, tech["login"], tech["secret"])
    assert r.status_code == 200, r.json
    return Api(api.client, api.rt, r.json["access_token"], {"id": tech["user_id"]})


def reset(owner: Api, structure_id: int, user_id: int, body=None, **kw):
    return owner.post(
        f"/v1/structures/{structure_id}/technical-users/{user_id}/secret",
        json={"confirm": True} if body is None else body,
        **kw,
    )


def credential(rt, user_id: int) -> TechnicalCredential:
    with rt.sessions() as s:
        return s.get(TechnicalCredential, user_id)


@pytest.fixture
def world(api, structure_of):
    """Ada: principal of ACME (with a technical user); Bob: principal of Bob Corp."""
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org", "Bob", "Builder")
    acme = structure_of(ada, "ACME SARL")
    bobs = structure_of(bob, "Bob Corp")
    return ada, bob, acme["id"], bobs["id"]


# --- creation ----------------------------------------------------------------------


def test_the_principal_creates_a_technical_user(rt, world):
    ada, _bob, st, _ = world
    before = utcnow()
    tech = created(ada, st, "Cash register software")
    assert LOGIN_RE.match(tech["login"]) and tech["secret"].startswith("ts_")
    assert len(tech["secret"]) > 40 and tech["label"] == "Cash register software"
    expires = dt.datetime.fromisoformat(tech["secret_expires_at"])
    assert before + dt.timedelta(days=424) <= expires <= utcnow() + dt.timedelta(days=424)
    with rt.sessions() as s:
        user = s.get(User, tech["user_id"])
        assert (user.kind, user.status, user.login_email, user.contact_email) == (
            "technical",
            "active",
            tech["login"],
            "ada@example.org",
        )
        assert user.password_hash is None
        rows = s.scalars(select(Attachment).where(Attachment.user_id == user.id)).all()
        assert [(a.structure_id, a.service_id, a.role, a.status) for a in rows] == [
            (st, None, "technical", "validated")
        ]
        cred = s.get(TechnicalCredential, user.id)
        assert (cred.structure_id, cred.label, cred.created_by_id, cred.rotated_at) == (
            st,
            "Cash register software",
            ada.user["id"],
            None,
        )
        entry = s.scalar(
            select(HistoryEntry).where(HistoryEntry.action == "technical_user.created")
        )
        assert (entry.structure_id, entry.actor_id, entry.target_user_id) == (
            st,
            ada.user["id"],
            user.id,
        )


def test_the_connection_file_holds_login_secret_expiry_and_how_to_get_a_token(world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    content = tech["connection_file"]
    assert f"AUTHZ_TECHNICAL_LOGIN={tech['login']}\n" in content
    assert f"AUTHZ_TECHNICAL_SECRET={tech['secret']}\n" in content
    assert "AUTHZ_API_URL=http://authz.test\n" in content
    assert tech["secret_expires_at"][:10] in content
    assert "/v1/auth/technical-token" in content


def test_the_connection_file_downloads_as_text(rt, world):
    ada, _bob, st, _ = world
    r = create(ada, st, query_string={"format": "file"})
    assert r.status_code == 201
    assert r.mimetype == "text/plain"
    assert r.headers["Content-Disposition"].startswith("attachment; filename=")
    assert r.headers["Cache-Control"] == "no-store"
    content = r.get_data(as_text=True)
    login = re.search(r"^AUTHZ_TECHNICAL_LOGIN=(\S+)$", content, re.MULTILINE).group(1)
    secret = re.search(r"^AUTHZ_TECHNICAL_SECRET=(\S+)$", content, re.MULTILINE).group(1)
    assert LOGIN_RE.match(login)
    assert get_token(Api(ada.client, rt), login, secret).status_code == 200


def test_the_secret_is_stored_only_as_an_argon2id_hash(api, rt, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    renewed = reset(ada, st, tech["user_id"]).json
    as_technical(api, renewed)
    cred = credential(rt, tech["user_id"])
    assert cred.secret_hash.startswith("$argon2id$")
    assert rt.hasher.verify(cred.secret_hash, renewed["secret"])
    with rt.sessions() as s:  # in clear in no column of any table
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)):
                dumped = repr(tuple(row))
                assert tech["secret"] not in dumped and renewed["secret"] not in dumped, table


def test_the_database_refuses_a_secret_in_clear(rt, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    with rt.sessions() as s:
        s.execute(text("DELETE FROM technical_credentials"))
        s.add(
            TechnicalCredential(
                user_id=tech["user_id"],
                structure_id=st,
                label="x",
                secret_hash="ts_in-clear",
                created_by_id=ada.user["id"],
                secret_expires_at=utcnow() + dt.timedelta(days=1),
            )
        )
        with pytest.raises(IntegrityError):
            s.flush()


@pytest.mark.parametrize("label", ["", "   ", "x" * 101, "two\nlines"])
def test_a_bad_label_is_refused(world, label):
    ada, _bob, st, _ = world
    r = create(ada, st, label)
    assert r.status_code == 422


def test_a_secondary_manager_cannot_create_nor_list_nor_reset(api, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    carl = api.person("carl@example.org", "Carl", "Second")
    attach_directly(ada, st, carl.user["id"], role="secondary")
    r = create(carl, st)
    assert r.status_code == 403 and r.json["code"] == "action_not_allowed"
    assert carl.get(f"/v1/structures/{st}/technical-users").status_code == 403
    assert reset(carl, st, tech["user_id"]).status_code == 403


def test_a_manager_of_another_structure_gets_404(world):
    ada, bob, st, bobs = world
    tech = created(ada, st)
    assert create(bob, st).status_code == 404
    assert bob.get(f"/v1/structures/{st}/technical-users").status_code == 404
    assert reset(bob, st, tech["user_id"]).status_code == 404
    # Bob's own structure does not reach Ada's technical user either.
    assert reset(bob, bobs, tech["user_id"]).status_code == 404


def test_a_person_is_not_a_technical_user_to_reset(world):
    ada, _bob, st, _ = world
    r = reset(ada, st, ada.user["id"])
    assert r.status_code == 404


def test_no_technical_user_on_an_inactive_structure(rt, world):
    ada, _bob, st, _ = world
    with rt.sessions() as s:
        s.get(Structure, st).status = "inactive"
        s.commit()
    assert create(ada, st).status_code == 403


def test_the_principal_lists_technical_users_with_their_expiry(world):
    ada, _bob, st, _ = world
    first = created(ada, st, "Cash register")
    second = created(ada, st, "Accounting")
    listed = ada.get(f"/v1/structures/{st}/technical-users").json
    assert listed["total"] == 2
    items = listed["items"]
    assert [(i["user_id"], i["label"], i["login"]) for i in items] == [
        (first["user_id"], "Cash register", first["login"]),
        (second["user_id"], "Accounting", second["login"]),
    ]
    assert items[0]["secret_expires_at"] == first["secret_expires_at"]
    assert items[0]["secret_expired"] is False and items[0]["rotated_at"] is None
    assert items[0]["status"] == "active" and items[0]["created_by_id"] == ada.user["id"]
    assert all("secret" not in i and "secret_hash" not in i for i in items)
    reset(ada, st, first["user_id"])
    after = ada.get(f"/v1/structures/{st}/technical-users").json["items"][0]
    assert after["rotated_at"] is not None
    assert after["secret_expires_at"] > first["secret_expires_at"]


# --- authentication ------------------------------------------------------------------


def test_the_technical_user_gets_a_token_with_login_and_secret(api, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    r = get_token(api, tech["login"].upper(), tech["secret"])
    assert r.status_code == 200 and r.json["token_type"] == "Bearer"
    robot = Api(api.client, api.rt, r.json["access_token"])
    me = robot.get("/v1/me").json
    assert (me["id"], me["kind"]) == (tech["user_id"], "technical")
    assert [s["id"] for s in robot.get("/v1/structures").json["items"]] == [st]


def test_a_technical_user_cannot_change_its_own_profile(api, world):
    # Found by the role × route matrix: its contact email is the principal's,
    # and a stolen token must not redirect it.
    ada, _bob, st, _ = world
    tech = created(ada, st)
    robot = as_technical(api, tech)
    before = robot.get("/v1/me").json
    r = robot.patch("/v1/me", json={"contact_email": "thief@example.org", "last_name": "X"})
    assert r.status_code == 403 and r.json["code"] == "not_a_person"
    assert robot.get("/v1/me").json == before


def test_a_technical_user_cannot_log_in_as_a_person(api, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    r = api.post("/v1/auth/token", json={"login_email": tech["login"], "password": tech["secret"]})
    assert r.status_code == 401 and r.json["code"] == "invalid_credentials"


def test_a_person_cannot_use_the_technical_token_route(api, world):
    r = get_token(api, "ada@example.org", PASSWORD)
    assert r.status_code == 401 and r.json["code"] == "invalid_credentials"


def test_unknown_login_and_wrong_secret_are_refused_alike(api, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    wrong = get_token(api, tech["login"], tech["secret"] + "x")
    unknown = get_token(api, "0000000000000000@technical.invalid", tech["secret"])
    for r in (wrong, unknown):
        assert r.status_code == 401 and r.json["code"] == "invalid_credentials"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_guessing_a_secret_is_locked_out_like_a_password(api, rt, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    for _ in range(rt.settings.login_max_failures):
        assert get_token(api, tech["login"], "ts_guess").status_code == 401
    locked = get_token(api, tech["login"], tech["secret"])
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0


def test_an_expired_secret_is_refused(api, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    token = as_technical(api, tech)
    with time_machine.travel(utcnow() + dt.timedelta(days=424, minutes=1)):
        r = get_token(api, tech["login"], tech["secret"])
        assert r.status_code == 401 and r.json["code"] == "secret_expired"
        assert token.get("/v1/me").status_code == 401


def test_the_expired_secret_shows_in_the_list(api, rt, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    with time_machine.travel(utcnow() + dt.timedelta(days=424, minutes=1)):
        fresh = api.client.post(
            "/v1/auth/token", json={"login_email": "ada@example.org", "password": PASSWORD}
        )
        owner = Api(api.client, rt, fresh.json["access_token"])
        item = owner.get(f"/v1/structures/{st}/technical-users").json["items"][0]
        assert item["user_id"] == tech["user_id"] and item["secret_expired"] is True


def test_a_token_never_outlives_the_secret(api, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    expiry = dt.datetime.fromisoformat(tech["secret_expires_at"])
    with time_machine.travel(expiry - dt.timedelta(hours=1)):
        r = get_token(api, tech["login"], tech["secret"])
        assert r.status_code == 200
        assert dt.datetime.fromisoformat(r.json["expires_at"]) == expiry


@pytest.fixture
def two_day_secrets(settings_overrides):
    settings_overrides["technical_secret_ttl_days"] = 2


def test_the_secret_lifetime_is_a_setting(two_day_secrets, api, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    expires = dt.datetime.fromisoformat(tech["secret_expires_at"])
    assert expires - utcnow() <= dt.timedelta(days=2)
    with time_machine.travel(utcnow() + dt.timedelta(days=2, minutes=1)):
        assert get_token(api, tech["login"], tech["secret"]).json["code"] == "secret_expired"


@pytest.mark.parametrize("status", ["inactive", "closed"])
def test_an_inactive_technical_user_cannot_get_a_token(api, rt, world, status):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    with rt.sessions() as s:
        s.get(User, tech["user_id"]).status = status
        s.commit()
    r = get_token(api, tech["login"], tech["secret"])
    assert r.status_code == 403 and r.json["code"] == "account_not_active"


# --- reset ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"confirm": False}])
def test_a_reset_needs_an_explicit_confirmation(api, world, body):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    r = reset(ada, st, tech["user_id"], body)
    assert r.status_code == 422 and r.json["code"] == "confirmation_required"
    assert get_token(api, tech["login"], tech["secret"]).status_code == 200


def test_a_reset_kills_the_old_secret_and_its_tokens_at_once(api, rt, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    old = as_technical(api, tech)
    assert old.get("/v1/me").status_code == 200
    r = reset(ada, st, tech["user_id"])
    assert r.status_code == 200
    renewed = r.json
    assert (renewed["user_id"], renewed["login"]) == (tech["user_id"], tech["login"])
    assert renewed["secret"] != tech["secret"]
    assert renewed["secret"] in renewed["connection_file"]
    gone = old.get("/v1/me")
    assert gone.status_code == 401 and gone.json["code"] == "invalid_token"
    refused = get_token(api, tech["login"], tech["secret"])
    assert refused.status_code == 401 and refused.json["code"] == "invalid_credentials"
    assert as_technical(api, renewed).get("/v1/me").status_code == 200
    with rt.sessions() as s:
        tokens = s.scalars(select(AuthToken).where(AuthToken.user_id == tech["user_id"])).all()
        assert [t.revoked_at is not None for t in tokens] == [True, False]
        entry = s.scalar(
            select(HistoryEntry).where(HistoryEntry.action == "technical_user.secret_reset")
        )
        assert (entry.actor_id, entry.target_user_id) == (ada.user["id"], tech["user_id"])
        assert entry.after["tokens_revoked"] == 1


def test_a_reset_warns_the_principal_by_mail(rt, world):
    ada, _bob, st, _ = world
    tech = created(ada, st, "Cash register")
    before = len(outbox(rt, "ada@example.org"))
    renewed = reset(ada, st, tech["user_id"]).json
    mails = outbox(rt, "ada@example.org")[before:]
    assert len(mails) == 1
    assert "reset" in mails[0].subject.lower()
    assert "Cash register" in mails[0].body and "update" in mails[0].body
    assert renewed["secret"] not in mails[0].body and tech["secret"] not in mails[0].body


def test_a_reset_downloads_as_a_file_too(world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    r = reset(ada, st, tech["user_id"], query_string={"format": "file"})
    assert r.status_code == 200 and r.mimetype == "text/plain"
    assert f"AUTHZ_TECHNICAL_LOGIN={tech['login']}" in r.get_data(as_text=True)


def test_a_reset_renews_the_expiry_of_an_expired_secret(api, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    with time_machine.travel(utcnow() + dt.timedelta(days=425)):
        fresh = api.client.post(
            "/v1/auth/token", json={"login_email": "ada@example.org", "password": PASSWORD}
        )
        owner = Api(api.client, api.rt, fresh.json["access_token"])
        renewed = reset(owner, st, tech["user_id"]).json
        assert get_token(api, tech["login"], renewed["secret"]).status_code == 200


# --- never a manager -----------------------------------------------------------------


def test_a_technical_user_is_refused_every_management_route(api, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    robot = as_technical(api, tech)
    # 403 where the structure is visible to it, 404 where even seeing is management.
    refused = [
        robot.patch(f"/v1/structures/{st}", json={"designation": "Hijacked"}),
        robot.post(f"/v1/structures/{st}/services", json={"code": "X", "label": "X"}),
        robot.get(f"/v1/structures/{st}/history"),
        robot.post(
            f"/v1/structures/{st}/attachments",
            json={"user_id": tech["user_id"], "role": "secondary", "whole_structure": True},
        ),
        robot.put(f"/v1/structures/{st}/spaces", json={"spaces": []}),
        robot.get(f"/v1/structures/{st}/access"),
        robot.delete(f"/v1/structures/{st}/attachments/{ada.user['id']}"),
        create(robot, st),
        robot.get(f"/v1/structures/{st}/technical-users"),
        reset(robot, st, tech["user_id"]),
        robot.post(
            "/v1/structures",
            json={
                "identifier_type": "SIRET",
                "identifier_value": "44306184100047",
                "designation": "Robot Inc",
            },
        ),
    ]
    assert [r.status_code for r in refused] == [403] * 5 + [404] + [403] * 5, [
        (r.status_code, r.json) for r in refused
    ]
    assert all(r.json["code"] in ("action_not_allowed", "not_found") for r in refused)
    assert ada.get(f"/v1/structures/{st}").json["designation"] == "ACME SARL"


def test_a_technical_user_asks_checks_about_itself_only(api, world):
    ada, _bob, st, _ = world
    tech = created(ada, st)
    robot = as_technical(api, tech)
    asked = robot.post(
        "/v1/subscription-requests",
        json={"structure_id": st, "lines": [{"space": "issued_invoices", "level": "modify"}]},
    )
    assert asked.status_code == 201, asked.json
    ok = ada.post(f"/v1/subscription-requests/{asked.json['id']}/validation", json={})
    assert ok.status_code == 200, ok.json

    def check(user_id, **question):
        return robot.post("/v1/checks", json={"user_id": user_id, "structure_id": st, **question})

    create_invoice = check(tech["user_id"], space="issued_invoices", action="create")
    assert create_invoice.status_code == 200 and create_invoice.json["allowed"] is True
    received = check(tech["user_id"], space="works_invoices", action="consult")
    assert received.status_code == 200 and received.json["allowed"] is False
    manage = check(tech["user_id"], action="technical_users.manage")
    assert manage.status_code == 200 and manage.json["allowed"] is False
    other = check(ada.user["id"], space="issued_invoices", action="consult")
    assert other.status_code == 403 and other.json["code"] == "subject_not_allowed"


# --- demo ----------------------------------------------------------------------------------


def test_the_demo_technical_user_has_a_credential_nobody_knows(rt, session):
    assert load_demo(session, rt).loaded
    with rt.sessions() as s:
        user = s.scalar(select(User).where(User.login_email == CASH_REGISTER[0]))
        cred = s.get(TechnicalCredential, user.id)
        assert cred.secret_hash.startswith("$argon2id$")
        assert cred.secret_expires_at > utcnow() + dt.timedelta(days=423)
        assert cred.label == CASH_REGISTER[1]
