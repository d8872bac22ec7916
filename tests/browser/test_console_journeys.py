"""The guide's main screens in a real browser (headless Chromium against a
live `authz serve`): sign-up, the mailed activation link, log-in, asking for
an attachment; the principal validates one, refuses one with a reason,
validates two in bulk, creates a technical user and reads the history with
names; a secondary manager cannot reach the technical users; a forged form is
refused; another structure's manager gets a 404; /docs renders the API."""

from __future__ import annotations

import re

import pytest

from tests.support.api import (
    PASSWORD,
    VALID_SIRETS,
    activation_token,
    attach_directly,
    create_structure,
    outbox,
)
from tests.support.browser import screenshot

ZOE_PASSWORD = "zoe chooses a long passphrase"


@pytest.fixture(scope="module")
def world(live):
    """Claire, principal of a bakery with Bob as secondary manager; three people
    who asked to be attached; Otto, principal of another structure."""
    api = live["api"]
    claire = api.person("claire@example.org", "Claire", "Martin")
    bakery = create_structure(claire, VALID_SIRETS[0], "Boulangerie Martin")
    api.person("bob@example.org", "Bob", "Durand")
    attach_directly(claire, bakery["id"], "bob@example.org", role="secondary")
    asked = {}
    for email, first, last in (
        ("yann@example.org", "Yann", "Le Goff"),
        ("xavier@example.org", "Xavier", "Roux"),
        ("walter@example.org", "Walter", "Blanc"),
    ):
        person = api.person(email, first, last)
        answer = person.post(
            "/v1/attachment-requests", json={"structure_id": bakery["id"], "whole_structure": True}
        )
        assert answer.status_code == 201, answer.json
        asked[first] = answer.json["id"]
    otto = api.person("otto@example.org", "Otto", "Autre")
    create_structure(otto, VALID_SIRETS[1], "Autre SA")
    return {"claire": claire, "bakery": bakery, "asked": asked}


def test_from_sign_up_to_validated_requests_technical_user_and_history(at, live, world):
    bakery = world["bakery"]["id"]
    # Zoé signs up, opens the mailed link, chooses her password, logs in, asks.
    at.open("/console/login?lang=en").click("#link-signup")
    at.fill("#login_email", "zoe@example.org").fill("#first_name", "Zoé")
    at.fill("#last_name", "Petit").click("#signup").find("#sent")
    link = re.search(
        r"http://\S+/console/activation\?token=\S+", _last_mail(live, "zoe@example.org")
    ).group(0)
    assert activation_token(live["rt"], "zoe@example.org") in link
    at.driver.get(link)
    screenshot(at.driver, "activation")
    at.fill("#password", ZOE_PASSWORD).fill("#password_again", ZOE_PASSWORD).click("#choose")
    assert at.find("#notice").get_attribute("data-code") == "activated"
    at.log_in("zoe@example.org", ZOE_PASSWORD).open("/console/me")
    at.fill("#identifier_value", VALID_SIRETS[0]).fill("#attachment_comment", "comptable")
    at.click("#ask-attachment")
    assert at.find("#notice").get_attribute("data-code") == "request_sent"
    screenshot(at.driver, "my-page")
    at.log_out()

    # Claire validates Zoé's request from the list, where names are shown.
    at.log_in("claire@example.org", PASSWORD)
    screenshot(at.driver, "my-structures")
    at.click("#structures a").click("#link-requests").find("#attachment-requests")
    rows = {
        r.find_element("css selector", ".requester").text: r
        for r in at.all("#attachment-requests tbody tr")
    }
    assert set(rows) == {"Zoé Petit", "Yann Le Goff", "Xavier Roux", "Walter Blanc"}
    screenshot(at.driver, "pending-requests")
    rows["Zoé Petit"].find_element("css selector", "a").click()
    assert "zoe@example.org" in at.find("#requester").text
    screenshot(at.driver, "attachment-request")
    at.click("#validate")
    assert at.find("#notice").get_attribute("data-code") == "validated"

    # Walter's is refused with a reason.
    at.open(f"/console/attachment-requests/{world['asked']['Walter']}")
    at.fill("#reason", "Inconnu du service").click("#refuse")
    assert at.find("#notice").get_attribute("data-code") == "refused"

    # Yann's and Xavier's are validated together.
    for row in at.all("#attachment-requests tbody tr"):
        row.find_element("css selector", "input[type=checkbox]").click()
    at.click("#bulk-validate").click("#bulk-submit").find("#outcomes")
    assert len(at.all("#outcomes tr.ok")) == 2 and not at.all("#outcomes tr.failed")

    roles = _roles(world)  # the API agrees: three members, Walter none
    assert [roles[f"{n}@example.org"] for n in ("zoe", "yann", "xavier")] == ["simple"] * 3
    assert roles.get("walter@example.org") is None

    # A technical user: its secret is shown once.
    at.open(f"/console/structures/{bakery}/technical-users")
    at.fill("#label", "ERP comptable").click("#create-technical")
    secret = at.find("#technical-secret").text
    assert len(secret) > 20
    screenshot(at.driver, "technical-user-secret")
    at.open(f"/console/structures/{bakery}/technical-users")
    assert "ERP comptable" in at.text() and secret not in at.text()

    at.open(f"/console/structures/{bakery}/users")
    screenshot(at.driver, "users")
    at.open(f"/console/structures/{bakery}/history")
    history = at.find("#history").text
    assert "Claire Martin" in history and "Zoé Petit" in history and "Walter Blanc" in history
    screenshot(at.driver, "history")
    at.log_out()

    # Bob, secondary manager, has no way to the technical users.
    at.log_in("bob@example.org", PASSWORD).open(f"/console/structures/{bakery}")
    assert at.all("#link-requests") and not at.all("#link-technical")
    at.open(f"/console/structures/{bakery}/technical-users")
    assert at.find("#error").get_attribute("data-code") == "action_not_allowed"


def test_a_forged_form_is_refused(at, world):
    at.log_in("claire@example.org", PASSWORD)
    at.open(f"/console/structures/{world['bakery']['id']}/technical-users")
    at.driver.execute_script(
        "document.querySelector('#technical-form input[name=csrf_token]').value = '0'.repeat(64)"
    )
    at.fill("#label", "forged").click("#create-technical")
    assert at.find("#error").get_attribute("data-code") == "csrf_refused"
    at.open(f"/console/structures/{world['bakery']['id']}/technical-users")
    assert "forged" not in at.text()


def test_another_structures_manager_gets_a_404(at, world):
    at.log_in("otto@example.org", PASSWORD)
    for page in ("", "/requests", "/users", "/history"):
        at.open(f"/console/structures/{world['bakery']['id']}{page}")
        assert at.find("#error").get_attribute("data-code") == "not_found", page
        assert "Boulangerie" not in at.text()


def test_the_docs_page_renders_the_whole_api(at):
    at.open("/docs")
    assert "Authorization service" in at.find(".swagger-ui .info .title").text
    at.find(".opblock")
    assert len(at.all(".opblock")) > 30
    assert "Unable to render" not in at.text()
    screenshot(at.driver, "api-docs")


def _last_mail(live, email: str) -> str:
    mails = outbox(live["rt"], email)
    assert mails, email
    return mails[-1].body


def _roles(world) -> dict[str, str | None]:
    """Login email → role in force on the bakery, as the REST API lists them."""
    answer = world["claire"].get(f"/v1/structures/{world['bakery']['id']}/users")
    assert answer.status_code == 200, answer.json
    return {item["user"]["login_email"]: item["role"] for item in answer.json["items"]}
