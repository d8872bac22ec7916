"""Forgot password: a mailed single-use link valid 60 minutes, the same answer
whether the address has an account or not, throttled; the activation link
opens a page where the person chooses a password."""

from __future__ import annotations

import datetime as dt
import re

import time_machine

from tests.support.api import PASSWORD, activation_token, outbox
from tests.support.console import Console

NEW = "a brand new passphrase 2026"


def reset_token(rt, email: str) -> str:
    mails = [m for m in outbox(rt, email) if m.kind == "password_reset"]
    assert mails, f"no reset mail for {email}"
    found = re.search(r"/console/password-reset\?token=([A-Za-z0-9_\-]+)", mails[-1].body)
    assert found, mails[-1].body
    return found.group(1)


def test_the_same_answer_whether_the_address_has_an_account_or_not(api, rt):
    api.person("ada@example.org")
    known = api.post("/v1/accounts/password-reset-email", json={"login_email": "ada@example.org"})
    unknown = api.post("/v1/accounts/password-reset-email", json={"login_email": "no@example.org"})
    assert known.status_code == unknown.status_code == 202
    assert known.data == unknown.data
    assert [m.kind for m in outbox(rt, "no@example.org")] == []
    assert "password_reset" in [m.kind for m in outbox(rt, "ada@example.org")]


def test_a_pending_account_gets_no_reset_link(api, rt):
    api.signup("pending@example.org")
    answer = api.post(
        "/v1/accounts/password-reset-email", json={"login_email": "pending@example.org"}
    )
    assert answer.status_code == 202
    assert "password_reset" not in [m.kind for m in outbox(rt, "pending@example.org")]


def test_the_link_sets_a_new_password_once_and_ends_every_session(api, rt):
    ada = api.person("ada@example.org")
    api.post("/v1/accounts/password-reset-email", json={"login_email": "ada@example.org"})
    token = reset_token(rt, "ada@example.org")
    done = api.post("/v1/accounts/password-reset", json={"token": token, "password": NEW})
    assert done.status_code == 200, done.json
    assert ada.get("/v1/me").status_code == 401  # the old bearer token ended
    again = api.post("/v1/accounts/password-reset", json={"token": token, "password": NEW + "!"})
    assert again.status_code == 422 and again.json["code"] == "reset_link_invalid"
    old = api.post("/v1/auth/token", json={"login_email": "ada@example.org", "password": PASSWORD})
    assert old.status_code == 401
    new = api.post("/v1/auth/token", json={"login_email": "ada@example.org", "password": NEW})
    assert new.status_code == 201


def test_the_link_expires_after_60_minutes_and_a_new_one_replaces_it(api, rt):
    api.person("ada@example.org")
    api.post("/v1/accounts/password-reset-email", json={"login_email": "ada@example.org"})
    first = reset_token(rt, "ada@example.org")
    api.post("/v1/accounts/password-reset-email", json={"login_email": "ada@example.org"})
    second = reset_token(rt, "ada@example.org")
    replaced = api.post("/v1/accounts/password-reset", json={"token": first, "password": NEW})
    assert replaced.status_code == 422
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=61)):
        late = api.post("/v1/accounts/password-reset", json={"token": second, "password": NEW})
    assert late.status_code == 422 and late.json["code"] == "reset_link_invalid"


def test_a_weak_password_keeps_the_link_usable(api, rt):
    api.person("ada@example.org")
    api.post("/v1/accounts/password-reset-email", json={"login_email": "ada@example.org"})
    token = reset_token(rt, "ada@example.org")
    weak = api.post("/v1/accounts/password-reset", json={"token": token, "password": "password"})
    assert weak.status_code == 422 and weak.json["code"] == "weak_password"
    ok = api.post("/v1/accounts/password-reset", json={"token": token, "password": NEW})
    assert ok.status_code == 200


def test_asking_for_links_is_throttled_for_known_and_unknown_addresses_alike(api, rt):
    api.person("ada@example.org")
    limit = rt.settings.password_reset_max_requests
    for email in ("ada@example.org", "nobody@example.org"):
        answers = [
            api.post("/v1/accounts/password-reset-email", json={"login_email": email}).status_code
            for _ in range(limit + 1)
        ]
        assert answers == [202] * limit + [429], email
    assert len([m for m in outbox(rt, "ada@example.org") if m.kind == "password_reset"]) == limit


def test_the_activation_link_opens_a_page_that_activates_the_account(app, api, rt):
    api.signup("new@example.org", "Neo", "Nouveau")
    token = activation_token(rt, "new@example.org")
    browser = Console(app.test_client())
    form = browser.text(f"/console/activation?token={token}")
    assert 'name="token" value="' + token + '"' in form
    differ = browser.post(
        "/console/activation", {"token": token, "password": NEW, "password_again": NEW + "x"}
    )
    assert differ.status_code == 422
    done = browser.post(
        "/console/activation", {"token": token, "password": NEW, "password_again": NEW}
    )
    assert done.status_code == 302 and "done=activated" in done.headers["Location"]
    login = api.post("/v1/auth/token", json={"login_email": "new@example.org", "password": NEW})
    assert login.status_code == 201


def test_the_forgot_password_pages(app, api, rt):
    api.person("ada@example.org")
    browser = Console(app.test_client())
    browser.get("/console/forgot-password")
    known = browser.post("/console/forgot-password", {"login_email": "ada@example.org"})
    browser.get("/console/forgot-password")
    unknown = browser.post("/console/forgot-password", {"login_email": "zz@example.org"})
    assert known.status_code == unknown.status_code == 200
    assert _without_csrf(known.get_data(True)) == _without_csrf(unknown.get_data(True))
    token = reset_token(rt, "ada@example.org")
    browser.get(f"/console/password-reset?token={token}")
    done = browser.post(
        "/console/password-reset", {"token": token, "password": NEW, "password_again": NEW}
    )
    assert done.status_code == 302 and "done=password_changed" in done.headers["Location"]


def _without_csrf(html: str) -> str:
    return re.sub(r'value="[0-9a-f]{64}"', "", html)
