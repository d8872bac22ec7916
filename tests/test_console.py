"""The manager console: its security (session cookie, CSRF, headers, idle
timeout, log-out, 404 for another structure's manager) and its pages calling
the same workflows as the API."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine

from tests.support.api import PASSWORD, attach_directly
from tests.support.console import Console, console_for


@pytest.fixture
def world(api, structure_of):
    """A principal with a structure, a secondary manager of it, a requester,
    and another structure with its own principal."""
    claire = api.person("claire@example.org", "Claire", "Martin")
    bob = api.person("bob@example.org", "Bob", "Durand")
    zoe = api.person("zoe@example.org", "Zoé", "Petit")
    other = api.person("other@example.org", "Otto", "Autre")
    mine = structure_of(claire, "Boulangerie Martin")
    theirs = structure_of(other, "Autre SA")
    attach_directly(claire, mine["id"], "bob@example.org", role="secondary")
    return {"claire": claire, "bob": bob, "zoe": zoe, "other": other, "mine": mine,
            "theirs": theirs}


def test_pages_ask_for_a_log_in_and_send_security_headers(client):
    answer = client.get("/console/")
    assert answer.status_code == 302 and "/console/login" in answer.headers["Location"]
    page = client.get("/console/login")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "<script>" not in page.get_data(as_text=True)


def test_a_bearer_token_does_not_open_the_console(api, world):
    answer = world["claire"].get("/console/")
    assert answer.status_code == 302


def test_the_session_cookie_is_httponly_and_samesite_and_secure_over_https(app, world):
    browser = Console(app.test_client())
    browser.get("/console/login")
    answer = browser.post(
        "/console/login", {"login_email": "claire@example.org", "password": PASSWORD}
    )
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if c.startswith("authz_console="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    secure = Console(app.test_client())
    secure.get("/console/login", base_url="https://localhost")
    answer = secure.post(
        "/console/login", {"login_email": "claire@example.org", "password": PASSWORD},
        base_url="https://localhost",
    )
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if "authz_console=" in c)
    assert cookie.startswith("__Host-authz_console=") and "Secure" in cookie


def test_a_form_without_its_csrf_token_is_refused(app, world):
    browser = console_for(app, "claire@example.org")
    answer = browser.post(
        f"/console/structures/{world['mine']['id']}/technical-users", {"label": "ERP"},
        csrf=False,
    )
    assert answer.status_code == 403 and 'data-code="csrf_refused"' in answer.get_data(True)
    forged = browser.post(
        f"/console/structures/{world['mine']['id']}/technical-users",
        {"label": "ERP", "csrf_token": "0" * 64},
    )
    assert forged.status_code == 403
    # A log-in form posted from elsewhere (no pre-session cookie) is refused too.
    fresh = Console(app.test_client())
    answer = fresh.client.post(
        "/console/login", data={"login_email": "claire@example.org", "password": PASSWORD}
    )
    assert answer.status_code == 403


def test_another_structures_manager_gets_a_404_on_every_page(app, world):
    theirs = world["theirs"]["id"]
    claire = console_for(app, "claire@example.org")
    for path in ("", "/requests", "/users", "/technical-users", "/history", "/principal",
                 "/identifier"):
        answer = claire.get(f"/console/structures/{theirs}{path}")
        assert answer.status_code == 404, path
        assert "Autre SA" not in answer.get_data(as_text=True)
    answer = claire.post(f"/console/structures/{theirs}/technical-users", {"label": "x"})
    assert answer.status_code == 404


def test_log_out_ends_the_session_at_once(app, world):
    browser = console_for(app, "claire@example.org")
    assert browser.get("/console/").status_code == 200
    cookie = browser.client.get_cookie("authz_console", path="/console").value
    assert browser.post("/console/logout").status_code == 302
    replay = app.test_client()
    replay.set_cookie("authz_console", cookie, path="/console")
    assert replay.get("/console/").status_code == 302


def test_an_idle_session_ends(app, rt, world):
    browser = console_for(app, "claire@example.org")
    idle = rt.settings.console_idle_timeout_seconds
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=idle - 60)):
        assert browser.get("/console/").status_code == 200  # in use: kept alive
    later = dt.timedelta(seconds=2 * idle - 90)
    with time_machine.travel(dt.datetime.now(dt.UTC) + later):
        assert browser.get("/console/").status_code == 200
    with time_machine.travel(dt.datetime.now(dt.UTC) + later + dt.timedelta(seconds=idle + 1)):
        assert browser.get("/console/").status_code == 302


def test_the_principal_validates_and_refuses_requests_with_names(app, api, world):
    zoe, mine = world["zoe"], world["mine"]
    asked = zoe.post(
        "/v1/attachment-requests", json={"structure_id": mine["id"], "whole_structure": True,
                                         "comment": "comptable"},
    )
    assert asked.status_code == 201, asked.json
    claire = console_for(app, "claire@example.org")
    page = claire.text(f"/console/structures/{mine['id']}/requests?lang=en")
    assert "Zoé Petit" in page and "comptable" in page
    detail = claire.text(f"/console/attachment-requests/{asked.json['id']}")
    assert "zoe@example.org" in detail
    answer = claire.post(
        f"/console/attachment-requests/{asked.json['id']}/validate",
        {"role": "simple", "valid_from": "", "comment": "ok"},
    )
    assert answer.status_code == 302, answer.get_data(True)
    assert zoe.get(f"/v1/structures/{mine['id']}").status_code == 200
    history = claire.text(f"/console/structures/{mine['id']}/history")
    assert "Claire Martin" in history and "Zoé Petit" in history


def test_a_refusal_needs_a_reason(app, world):
    zoe, mine = world["zoe"], world["mine"]
    asked = zoe.post("/v1/attachment-requests", json={"structure_id": mine["id"],
                                                      "whole_structure": True})
    claire = console_for(app, "claire@example.org")
    claire.get(f"/console/attachment-requests/{asked.json['id']}")
    empty = claire.post(f"/console/attachment-requests/{asked.json['id']}/refuse", {"reason": ""})
    assert empty.status_code == 422
    done = claire.post(f"/console/attachment-requests/{asked.json['id']}/refuse",
                       {"reason": "inconnu"})
    assert done.status_code == 302
    mine_now = zoe.get("/v1/attachment-requests?mine=true").json["items"]
    assert [r["status"] for r in mine_now] == ["refused"]


def test_only_the_principal_reaches_technical_users_and_the_secret_shows_once(app, world):
    mine = world["mine"]["id"]
    bob = console_for(app, "bob@example.org")
    assert bob.get(f"/console/structures/{mine}/technical-users").status_code == 403
    claire = console_for(app, "claire@example.org")
    claire.get(f"/console/structures/{mine}/technical-users")
    created = claire.post(f"/console/structures/{mine}/technical-users", {"label": "ERP"})
    html = created.get_data(as_text=True)
    secret = re.search(r'id="technical-secret"><code>([^<]+)</code>', html).group(1)
    listing = claire.text(f"/console/structures/{mine}/technical-users")
    assert "ERP" in listing and secret not in listing


def test_the_pages_speak_french_and_english(app, world):
    claire = console_for(app, "claire@example.org")
    assert "Mes structures" in claire.text("/console/")  # French by default
    assert "My structures" in claire.text("/console/?lang=en")
    assert "My structures" in claire.text("/console/")  # the choice is kept
    assert "Mes structures" in claire.text("/console/?lang=fr")
    assert "Boulangerie Martin" in claire.text("/console/")


def test_every_text_of_the_templates_has_its_french():
    from pathlib import Path

    from api.console import i18n

    root = Path(__file__).parent.parent / "api"
    texts = set()
    for path in [*root.glob("templates/console/*.html"), *root.glob("console/*.py")]:
        texts |= set(re.findall(r'(?<![\w.])t\("([^"~]+)"\)', path.read_text(encoding="utf-8")))
    missing = sorted(t for t in texts if t not in i18n.FRENCH)
    assert not missing
