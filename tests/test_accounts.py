"""Sign-up, activation, log-in / log-out, brute-force protection, one's account."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from sqlalchemy import select

from models import ActivationToken, AuthToken, User
from tests.support.api import PASSWORD, activation_token, outbox


def _user(rt, email):
    with rt.sessions() as s:
        return s.scalar(select(User).where(User.login_email == email))


def _set_status(rt, email, status):
    with rt.sessions() as s:
        s.scalar(select(User).where(User.login_email == email)).status = status
        s.commit()


def test_sign_up_creates_a_pending_account_and_mails_a_link(api, rt):
    r = api.signup("New.Person@Example.org", contact_email="contact@example.org")
    assert r.status_code == 201
    assert r.json["status"] == "pending"
    assert r.json["login_email"] == "new.person@example.org"
    assert r.json["contact_email"] == "contact@example.org"
    mails = outbox(rt, "new.person@example.org")
    assert [m.kind for m in mails] == ["activation"]
    assert "http://authz.test/console/activation?token=" in mails[0].body


def test_duplicate_login_email_is_refused_whatever_the_case(api):
    assert api.signup("dup@example.org").status_code == 201
    r = api.signup("DUP@Example.ORG")
    assert r.status_code == 409
    assert r.json["code"] == "login_email_taken"
    assert r.content_type == "application/problem+json"


def test_pending_account_cannot_log_in(api):
    api.signup("pending@example.org")
    r = api.post(
        "/v1/auth/token", json={"login_email": "pending@example.org", "password": PASSWORD}
    )
    assert r.status_code == 401


def test_activation_sets_the_password_and_the_link_works_once(api, rt):
    api.signup("once@example.org")
    token = activation_token(rt, "once@example.org")
    r = api.post("/v1/accounts/activation", json={"token": token, "password": PASSWORD})
    assert r.status_code == 200 and r.json["status"] == "active"
    again = api.post("/v1/accounts/activation", json={"token": token, "password": PASSWORD})
    assert again.status_code == 422
    assert again.json["code"] == "activation_link_invalid"


def test_expired_activation_link_is_refused(api, rt):
    api.signup("late@example.org")
    token = activation_token(rt, "late@example.org")
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=61)):
        r = api.post("/v1/accounts/activation", json={"token": token, "password": PASSWORD})
    assert r.status_code == 422
    assert r.json["code"] == "activation_link_invalid"
    assert _user(rt, "late@example.org").status == "pending"


def test_unknown_activation_token_is_refused(api):
    r = api.post("/v1/accounts/activation", json={"token": "nope", "password": PASSWORD})
    assert r.status_code == 422 and r.json["code"] == "activation_link_invalid"


def test_weak_password_is_refused_and_the_link_stays_usable(api, rt):
    api.signup("weak@example.org")
    token = activation_token(rt, "weak@example.org")
    r = api.post("/v1/accounts/activation", json={"token": token, "password": "short"})
    assert r.status_code == 422 and r.json["code"] == "weak_password"
    ok = api.post("/v1/accounts/activation", json={"token": token, "password": PASSWORD})
    assert ok.status_code == 200


def test_resend_gives_a_new_link_and_kills_the_old_one(api, rt):
    api.signup("resend@example.org")
    old = activation_token(rt, "resend@example.org")
    r = api.post("/v1/accounts/activation-email", json={"login_email": "RESEND@example.org"})
    assert r.status_code == 202
    new = activation_token(rt, "resend@example.org")
    assert new != old
    assert (
        api.post("/v1/accounts/activation", json={"token": old, "password": PASSWORD}).status_code
        == 422
    )
    assert (
        api.post("/v1/accounts/activation", json={"token": new, "password": PASSWORD}).status_code
        == 200
    )


def test_resend_says_nothing_about_unknown_or_active_accounts(api, rt):
    api.person("active@example.org")
    before = len(outbox(rt))
    for email in ("active@example.org", "nobody@example.org", "not-an-email"):
        r = api.post("/v1/accounts/activation-email", json={"login_email": email})
        assert r.status_code == 202
    assert len(outbox(rt)) == before


def test_secrets_are_stored_only_hashed(api, rt):
    ada = api.person("hash@example.org")
    with rt.sessions() as s:
        user = s.scalar(select(User).where(User.login_email == "hash@example.org"))
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
        tokens = s.scalars(select(AuthToken.token_hash)).all()
        assert tokens and all(len(t) == 32 for t in tokens)
        assert ada.token.encode() not in tokens
        links = s.scalars(select(ActivationToken.token_hash)).all()
        assert all(len(t) == 32 for t in links)


def test_wrong_password_is_refused_with_a_problem(api):
    api.person("ada@example.org")
    r = api.post(
        "/v1/auth/token", json={"login_email": "ada@example.org", "password": "wrong password!!"}
    )
    assert r.status_code == 401
    assert r.content_type == "application/problem+json"
    assert r.json["code"] == "invalid_credentials"
    unknown = api.post(
        "/v1/auth/token", json={"login_email": "ghost@example.org", "password": "wrong password!!"}
    )
    assert unknown.status_code == 401 and unknown.json["code"] == "invalid_credentials"


def test_log_in_is_case_insensitive_on_the_email(api):
    api.person("case@example.org")
    r = api.post("/v1/auth/token", json={"login_email": "CASE@example.org", "password": PASSWORD})
    assert r.status_code == 200


def test_token_gives_access_until_log_out(api):
    ada = api.person("ada@example.org")
    assert ada.get("/v1/me").json["login_email"] == "ada@example.org"
    assert ada.delete("/v1/auth/token").status_code == 204
    r = ada.get("/v1/me")
    assert r.status_code == 401 and r.json["code"] == "invalid_token"


def test_token_expires(api, rt):
    ada = api.person("ada@example.org")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=rt.settings.token_ttl_seconds + 1)
    with time_machine.travel(later):
        assert ada.get("/v1/me").status_code == 401


@pytest.mark.parametrize("status", ["inactive", "closed"])
def test_inactive_and_closed_accounts_cannot_log_in_nor_use_tokens(api, rt, status):
    ada = api.person("ada@example.org")
    _set_status(rt, "ada@example.org", status)
    r = api.post("/v1/auth/token", json={"login_email": "ada@example.org", "password": PASSWORD})
    assert r.status_code == 403 and r.json["code"] == "account_not_active"
    assert ada.get("/v1/me").status_code == 401


def test_log_in_is_locked_after_repeated_failures(api, rt):
    api.person("target@example.org")
    limit = rt.settings.login_max_failures
    for _ in range(limit):
        r = api.post(
            "/v1/auth/token",
            json={"login_email": "target@example.org", "password": "not the password"},
        )
        assert r.status_code == 401
    locked = api.post(
        "/v1/auth/token", json={"login_email": "target@example.org", "password": PASSWORD}
    )
    assert locked.status_code == 429
    assert locked.json["code"] == "too_many_attempts"
    assert int(locked.headers["Retry-After"]) > 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=rt.settings.login_lockout_seconds + 1)
    with time_machine.travel(later):
        ok = api.post(
            "/v1/auth/token", json={"login_email": "target@example.org", "password": PASSWORD}
        )
        assert ok.status_code == 200


def test_lock_out_of_one_email_does_not_lock_another(api, rt):
    api.person("other@example.org")
    for _ in range(rt.settings.login_max_failures):
        api.post(
            "/v1/auth/token",
            json={"login_email": "victim@example.org", "password": "not the password"},
        )
    r = api.post("/v1/auth/token", json={"login_email": "other@example.org", "password": PASSWORD})
    assert r.status_code == 200


def test_one_address_is_locked_after_many_failures_on_many_emails(api, rt, app):
    api.person("real@example.org")
    for i in range(rt.settings.login_max_failures_per_ip):
        api.post(
            "/v1/auth/token",
            json={"login_email": f"spray{i}@example.org", "password": "not the password"},
        )
    r = api.post("/v1/auth/token", json={"login_email": "real@example.org", "password": PASSWORD})
    assert r.status_code == 429


def test_me_can_change_profile_but_not_login_email(api):
    ada = api.person("ada@example.org")
    r = ada.patch(
        "/v1/me",
        json={"contact_email": "Notify@Example.org", "phone": "+33 1 23", "first_name": "Augusta"},
    )
    assert r.status_code == 200
    assert r.json["contact_email"] == "notify@example.org"
    assert r.json["first_name"] == "Augusta"
    refused = ada.patch("/v1/me", json={"login_email": "new@example.org"})
    assert refused.status_code == 422
    assert "login_email" in refused.json["errors"]
    assert ada.get("/v1/me").json["login_email"] == "ada@example.org"


def test_me_requires_authentication(api):
    r = api.get("/v1/me")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
