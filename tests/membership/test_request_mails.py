"""The mail a user gets when a manager decides their request (issue 15): it
carries the manager's comment (validation) or reason (refusal), names the
spaces by their labels, not their codes, and names the services concerned."""

from __future__ import annotations

from tests.support.membership import (
    Bakery,
    ask_attachment,
    ask_subscription,
    attached,
    contact_of,
    notifications,
    person,
    process,
)


def last_mail(rt, who) -> tuple[str, str]:
    mail = notifications(rt, contact_of(who))[-1]
    return mail.subject, mail.body


def test_an_attachment_validation_mail_names_the_services_and_the_comment(api, rt, bakery: Bakery):
    julien = person(api, "julien@login.example")
    asked = ask_attachment(julien, bakery.id, service_ids=[bakery.services["ATELIER"]])
    done = process(bakery.claire, "attachment", asked["id"], "validation", comment="Bienvenue")
    assert done.status_code == 200, done.json
    subject, body = last_mail(rt, julien)
    assert subject.endswith("validated")
    assert "ATELIER (Atelier)" in body
    assert "Comment: Bienvenue" in body


def test_an_attachment_refusal_mail_names_what_was_asked_and_the_reason(api, rt, bakery: Bakery):
    julien = person(api, "julien@login.example")
    asked = ask_attachment(julien, bakery.id, service_ids=[bakery.services["BOUTIQUE"]])
    done = process(bakery.claire, "attachment", asked["id"], "refusal", reason="Pas chez nous")
    assert done.status_code == 200, done.json
    subject, body = last_mail(rt, julien)
    assert subject.endswith("refused")
    assert "BOUTIQUE (Boutique)" in body
    assert "Reason: Pas chez nous" in body


def test_a_subscription_validation_mail_names_space_labels_services_and_the_comment(
    api, rt, bakery: Bakery
):
    lucie = attached(api, bakery, "lucie@login.example")
    asked = ask_subscription(
        lucie,
        bakery.id,
        ("issued_invoices", None, "consult"),
        ("works_invoices", bakery.services["ATELIER"], "modify"),
    )
    done = process(bakery.claire, "subscription", asked["id"], "validation", comment="Voilà")
    assert done.status_code == 200, done.json
    subject, body = last_mail(rt, lucie)
    assert subject.endswith("validated")
    assert "Issued invoices (Factures émises), all services: consult" in body
    assert "Works invoices (Factures de travaux), service ATELIER (Atelier): modify" in body
    assert "issued_invoices" not in body and "works_invoices" not in body
    assert "Comment: Voilà" in body


def test_a_subscription_refusal_mail_names_space_labels_and_the_reason(api, rt, bakery: Bakery):
    lucie = attached(api, bakery, "lucie@login.example")
    asked = ask_subscription(lucie, bakery.id, ("issued_invoices", None, "modify"))
    done = process(bakery.claire, "subscription", asked["id"], "refusal", reason="Trop tôt")
    assert done.status_code == 200, done.json
    subject, body = last_mail(rt, lucie)
    assert subject.endswith("refused")
    assert "Issued invoices (Factures émises), all services: modify" in body
    assert "issued_invoices" not in body
    assert "Reason: Trop tôt" in body


def test_a_revoked_subscription_mail_names_the_space_label(api, rt, bakery: Bakery):
    lucie = attached(api, bakery, "lucie@login.example")
    asked = ask_subscription(lucie, bakery.id, ("issued_invoices", None, "consult"))
    assert process(bakery.claire, "subscription", asked["id"], "validation").status_code == 200
    subs = bakery.claire.get(f"/v1/structures/{bakery.id}/users/{lucie.user['id']}/subscriptions")
    sub_id = next(s["id"] for s in subs.json["items"] if s["space"] == "issued_invoices")
    gone = bakery.claire.delete(
        f"/v1/structures/{bakery.id}/users/{lucie.user['id']}/subscriptions/{sub_id}"
    )
    assert gone.status_code == 200, gone.json
    subject, body = last_mail(rt, lucie)
    assert subject.endswith("revoked")
    assert "Issued invoices (Factures émises), all services: consult" in body
