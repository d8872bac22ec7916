"""The manager console: its security (session cookie, CSRF, headers, idle
timeout, log-out, 404 for another structure's manager) and its pages calling
the same workflows as the API."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import func, select

from api.console import i18n
from authz.config import SettingError, load_settings
from authz.workflows import maintenance, operators
from authz.workflows.records import HISTORY_ACTIONS
from models import ConsoleSession
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
    return {
        "claire": claire,
        "bob": bob,
        "zoe": zoe,
        "other": other,
        "mine": mine,
        "theirs": theirs,
    }


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
        "/console/login",
        {"login_email": "claire@example.org", "password": PASSWORD},
        base_url="https://localhost",
    )
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if "authz_console=" in c)
    assert cookie.startswith("__Host-authz_console=") and "Secure" in cookie


def test_a_form_without_its_csrf_token_is_refused(app, world):
    browser = console_for(app, "claire@example.org")
    answer = browser.post(
        f"/console/structures/{world['mine']['id']}/technical-users",
        {"label": "ERP"},
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
    for path in (
        "",
        "/requests",
        "/users",
        "/technical-users",
        "/history",
        "/principal",
        "/identifier",
    ):
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
        "/v1/attachment-requests",
        json={"structure_id": mine["id"], "whole_structure": True, "comment": "comptable"},
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
    asked = zoe.post(
        "/v1/attachment-requests", json={"structure_id": mine["id"], "whole_structure": True}
    )
    claire = console_for(app, "claire@example.org")
    claire.get(f"/console/attachment-requests/{asked.json['id']}")
    empty = claire.post(f"/console/attachment-requests/{asked.json['id']}/refuse", {"reason": ""})
    assert empty.status_code == 422
    done = claire.post(
        f"/console/attachment-requests/{asked.json['id']}/refuse", {"reason": "inconnu"}
    )
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
    root = Path(__file__).parent.parent / "api"
    texts = set()
    for path in [*root.glob("templates/console/*.html"), *root.glob("console/*.py")]:
        texts |= set(re.findall(r'(?<![\w.])t\("([^"~]+)"\)', path.read_text(encoding="utf-8")))
    missing = sorted(t for t in texts if t not in i18n.FRENCH)
    assert not missing


def test_every_history_action_has_its_label_in_both_languages():
    keys = {f"action:{action}" for action in HISTORY_ACTIONS}
    assert not sorted(keys - set(i18n.FRENCH))
    assert not sorted(keys - set(i18n.ENGLISH_VALUES))
    assert not sorted({k for k in i18n.ENGLISH_VALUES if k.startswith("action:")} - keys)


def test_the_history_shows_translated_actions(app, api, world):
    mine = world["mine"]["id"]
    claire = console_for(app, "claire@example.org")
    french = claire.text(f"/console/structures/{mine}/history?lang=fr")
    assert "<td>Invitation acceptée</td>" in french
    assert "invitation.accepted" not in french
    english = claire.text(f"/console/structures/{mine}/history?lang=en")
    assert "<td>Invitation accepted</td>" in english


def test_direct_attachment_of_an_active_account_sends_an_invitation(app, api, world):
    mine = world["mine"]["id"]
    claire = console_for(app, "claire@example.org")
    claire.get(f"/console/structures/{mine}/users")
    answer = claire.post(
        f"/console/structures/{mine}/users/attach",
        {"login_email": "zoe@example.org", "role": "simple"},
    )
    assert answer.status_code == 302 and "done=invitation_sent" in answer.headers["Location"]
    assert world["zoe"].get(f"/v1/structures/{mine}").status_code == 404  # nothing granted yet
    zoe = console_for(app, "zoe@example.org")
    page = zoe.text("/console/me")
    invitation = re.search(r"/console/me/invitations/(\d+)", page).group(1)
    accepted = zoe.post(f"/console/me/invitations/{invitation}", {"answer": "accept"})
    assert "done=invitation_accepted" in accepted.headers["Location"]
    assert world["zoe"].get(f"/v1/structures/{mine}").status_code == 200


def test_the_invitation_and_the_subscription_form_name_structures_by_designation(app, world):
    mine = world["mine"]["id"]
    zoe = console_for(app, "zoe@example.org")
    assert 'name="structure_id"' not in zoe.text("/console/me")  # attached nowhere
    claire = console_for(app, "claire@example.org")
    claire.get(f"/console/structures/{mine}/users")
    claire.post(
        f"/console/structures/{mine}/users/attach",
        {"login_email": "zoe@example.org", "role": "simple"},
    )
    invited = zoe.text("/console/me")
    [invitation] = re.findall(r'<ul id="invitations">\s*<li>([^<]*)', invited)
    assert "Boulangerie Martin" in invitation and str(mine) not in invitation
    invitation_id = re.search(r"/console/me/invitations/(\d+)", invited).group(1)
    zoe.post(f"/console/me/invitations/{invitation_id}", {"answer": "accept"})
    choices = re.findall(
        r'<option value="(\d+)">([^<]*)</option>',
        re.search(r'<select name="structure_id".*?</select>', zoe.text("/console/me")).group(0),
    )
    assert choices == [(str(mine), "Boulangerie Martin")]  # not Autre SA


def test_users_are_searched_exported_mailed_and_removed(app, api, rt, world):
    mine = world["mine"]["id"]
    claire = console_for(app, "claire@example.org")
    claire.get(f"/console/structures/{mine}/users")
    created = claire.post(
        f"/console/structures/{mine}/accounts",
        {"login_email": "new@example.org", "first_name": "Nina", "last_name": "Neuve"},
    )
    assert "done=account_created" in created.headers["Location"], created.get_data(True)
    found = claire.text(f"/console/structures/{mine}/users?last_name=neuve")
    assert "new@example.org" in found and "bob@example.org" not in found
    nina = re.search(r'data-user="(\d+)"', found).group(1)
    csv = claire.post(
        f"/console/structures/{mine}/users/selected", {"user_ids": nina, "action": "export"}
    )
    assert csv.mimetype == "text/csv" and "new@example.org" in csv.get_data(True)
    claire.get(f"/console/structures/{mine}/users")
    mailed = claire.post(
        f"/console/structures/{mine}/users/selected", {"user_ids": nina, "action": "activation"}
    )
    assert mailed.status_code == 200 and 'class="ok"' in mailed.get_data(True)
    claire.get(f"/console/structures/{mine}/users")
    removed = claire.post(f"/console/structures/{mine}/users/{nina}/remove")
    assert "done=removed" in removed.headers["Location"]
    # The principal cannot be removed: the workflow's refusal, as a page.
    claire.get(f"/console/structures/{mine}/users")
    principal = world["claire"].user["id"]
    refused = claire.post(f"/console/structures/{mine}/users/{principal}/remove")
    assert refused.status_code == 409


def test_a_technical_secret_is_reset_only_when_confirmed(app, world):
    mine = world["mine"]["id"]
    claire = console_for(app, "claire@example.org")
    claire.get(f"/console/structures/{mine}/technical-users")
    created = claire.post(f"/console/structures/{mine}/technical-users", {"label": "ERP"})
    listing = claire.text(f"/console/structures/{mine}/technical-users")
    reset = re.search(r"technical-users/(\d+)/reset", listing).group(0)
    unconfirmed = claire.post(f"/console/structures/{mine}/{reset}")
    assert unconfirmed.status_code == 422
    claire.get(f"/console/structures/{mine}/technical-users")
    confirmed = claire.post(f"/console/structures/{mine}/{reset}", {"confirm": "on"})
    old = re.search(r"<code>([^<]+)</code>", created.get_data(True)).group(1)
    new = re.search(r"<code>([^<]+)</code>", confirmed.get_data(True)).group(1)
    assert confirmed.status_code == 200 and new != old


def test_the_principal_hands_over_and_the_identifier_changes(app, api, world):
    mine = world["mine"]["id"]
    claire = console_for(app, "claire@example.org")
    claire.get(f"/console/structures/{mine}/identifier")
    unconfirmed = claire.post(
        f"/console/structures/{mine}/identifier",
        {"identifier_type": "SIRET", "identifier_value": "44306184100047"},
    )
    assert unconfirmed.status_code == 422
    changed = claire.post(
        f"/console/structures/{mine}/identifier",
        {"identifier_type": "SIRET", "identifier_value": "44306184100047", "confirm": "on"},
    )
    assert "done=identifier_changed" in changed.headers["Location"]
    successor = int(re.search(r"/structures/(\d+)", changed.headers["Location"]).group(1))
    assert successor != mine
    claire.get(f"/console/structures/{successor}/principal")
    handed = claire.post(
        f"/console/structures/{successor}/principal", {"login_email": "bob@example.org"}
    )
    assert "done=principal_designated" in handed.headers["Location"], handed.get_data(True)
    assert claire.get(f"/console/structures/{successor}/technical-users").status_code == 403


def test_a_person_asks_for_an_attachment_and_a_subscription_from_their_page(app, world):
    zoe = console_for(app, "zoe@example.org")
    zoe.get("/console/me")
    asked = zoe.post(
        "/console/me/attachment-requests",
        {
            "identifier_type": "SIRET",
            "identifier_value": world["mine"]["identifier_value"],
            "comment": "bonjour",
        },
    )
    assert "done=request_sent" in asked.headers["Location"]
    zoe.get("/console/me")
    not_member = zoe.post(
        "/console/me/subscription-requests",
        {"structure_id": world["mine"]["id"], "space": "issued_invoices", "level": "consult"},
    )
    assert not_member.status_code == 404  # not attached yet: the workflow's answer


def test_the_review_pages_are_for_the_security_reviewer_only(app, api, rt, world):
    claire = console_for(app, "claire@example.org")
    assert claire.get("/console/review").status_code == 403
    assert claire.get("/console/review/explain").status_code == 403
    api.person("rita@example.org", "Rita", "Revue")
    with rt.sessions() as s:
        operators.create_operator(s, rt, "rita@example.org", role="security_reviewer")
    rita = console_for(app, "rita@example.org")
    assert "findings" in rita.text("/console/review")
    explained = rita.text(
        f"/console/review/explain?user_id={world['claire'].user['id']}"
        f"&structure_id={world['mine']['id']}&space=issued_invoices&action=consult"
    )
    assert 'id="explanation"' in explained and "decision:" in explained


@pytest.mark.parametrize(
    "value, accepted", [("60", True), ("59", False), ("28800", True), ("28801", False)]
)
def test_the_idle_timeout_setting_is_checked(value, accepted):
    environ = {"AUTHZ_CONSOLE_IDLE_TIMEOUT_SECONDS": value}
    if accepted:
        assert load_settings(environ=environ).console_idle_timeout_seconds == int(value)
    else:
        with pytest.raises(SettingError, match="AUTHZ_CONSOLE_IDLE_TIMEOUT_SECONDS"):
            load_settings(environ=environ)


def test_a_subscription_request_is_asked_and_validated_with_its_level_switched(app, api, world):
    mine = world["mine"]["id"]
    attach_directly(world["claire"], mine, "zoe@example.org")
    zoe = console_for(app, "zoe@example.org")
    zoe.get("/console/me")
    asked = zoe.post(
        "/console/me/subscription-requests",
        {"structure_id": mine, "space": "issued_invoices", "level": "consult"},
    )
    assert "done=request_sent" in asked.headers["Location"], asked.get_data(True)
    claire = console_for(app, "claire@example.org")
    listing = claire.text(f"/console/structures/{mine}/requests")
    request_id = re.search(r"/console/subscription-requests/(\d+)", listing).group(1)
    page = claire.text(f"/console/subscription-requests/{request_id}")
    line = re.search(r'name="level_(\d+)"', page).group(1)
    done = claire.post(
        f"/console/subscription-requests/{request_id}/validate",
        {f"level_{line}": "modify", "comment": "ok"},
    )
    assert "done=validated" in done.headers["Location"], done.get_data(True)
    [mine_now] = world["zoe"].get("/v1/subscription-requests?mine=true").json["items"]
    assert mine_now["status"] == "validated"
    assert [line["level"] for line in mine_now["lines"]] == ["modify"]


def test_maintenance_deletes_ended_sessions_and_keeps_live_ones(app, rt, world):
    ended = console_for(app, "claire@example.org")
    ended.post("/console/logout")
    console_for(app, "bob@example.org")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1, minutes=1)
    with rt.sessions() as s:
        counts = maintenance.run_maintenance(s, rt, now=later)
        assert counts["console_sessions"] == 1
        assert s.scalar(select(func.count()).select_from(ConsoleSession)) == 1


def test_console_log_ins_share_the_api_lock_out(app, rt, world):
    browser = Console(app.test_client())
    statuses = []
    for _ in range(rt.settings.login_max_failures + 1):
        browser.get("/console/login")
        answer = browser.post(
            "/console/login", {"login_email": "claire@example.org", "password": "wrong"}
        )
        statuses.append(answer.status_code)
    assert statuses == [401] * rt.settings.login_max_failures + [429]
    assert int(answer.headers["Retry-After"]) > 0
    api_login = app.test_client().post(
        "/v1/auth/token", json={"login_email": "claire@example.org", "password": PASSWORD}
    )
    assert api_login.status_code == 429  # the same counters as the API's log-in


def test_a_principal_names_successors_when_deactivating_from_the_console(app, api, world):
    claire = console_for(app, "claire@example.org")
    page = claire.text("/console/me")
    assert re.findall(r'name="successor_(\d+)"', page) == [str(world["mine"]["id"])]
    refused = claire.post("/console/me/deactivate", {"password": PASSWORD})
    assert refused.status_code == 409  # successors_required: the workflow's answer
    assert "Boulangerie Martin" in claire.text("/console/")  # still logged in, still principal
    left = claire.post(
        "/console/me/deactivate",
        {"password": PASSWORD, f"successor_{world['mine']['id']}": "bob@example.org"},
    )
    assert "done=deactivated" in left.headers["Location"], left.get_data(True)
    login = claire.text(left.headers["Location"] + "&lang=en")
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=60)).strftime("%Y-%m-%d")
    assert f'id="reactivable-until">You can reactivate your account until {until}' in login
    assert claire.get("/console/me").status_code == 302  # the session ended with the account
    bob = console_for(app, "bob@example.org")
    assert "gestionnaire principal" in bob.text("/console/")


def test_the_log_in_page_shows_only_a_date_as_reactivation_deadline(app):
    console = Console(app.test_client())
    assert "reactivable-until" not in console.text("/console/login?until=<b>evil</b>")
    assert "2027-01-29 10:12 UTC" in console.text("/console/login?until=2027-01-29T10:12")


def test_my_requests_name_their_structures_by_designation(app, world):
    """Issue 15: "My requests" listed structure ids."""
    mine = world["mine"]["id"]
    asked = world["zoe"].post(
        "/v1/attachment-requests", json={"structure_id": mine, "comment": "Bonjour"}
    )
    assert asked.status_code == 201, asked.json
    zoe = console_for(app, "zoe@example.org")
    [listed] = re.findall(r'<ul id="my-requests">\s*<li>([^<]*)', zoe.text("/console/me"))
    assert "Boulangerie Martin" in listed
    assert f"— {mine}:" not in listed and "Structure" not in listed
