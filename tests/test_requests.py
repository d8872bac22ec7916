"""Attachment and subscription requests (issue 4): every step of the guide's
"demandes de rattachement" and "demandes d'abonnement" sections (and "rattacher
un utilisateur") through the API, unit and bulk, ending with decisions; then
the rules, one test each.

Decisions are asked through POST /v1/checks, by the user about themself or
with a client key, at least at the revision the change was committed at.

Speed: the module shares one migrated database and one app (creating them per
test costs about a second on PostgreSQL); every test builds its own structure,
people with their own addresses and its own client keys, and compares states
before and after, so tests stay independent of each other and of their order.
"""

from __future__ import annotations

import datetime as dt
import importlib
import itertools
import shutil
import threading
from dataclasses import dataclass

import pytest
import time_machine
from sqlalchemy import func, select, text
from stdnum.fr import siret

from api import create_app
from authz.config import load_settings
from authz.db import make_engine
from authz.runtime import close_runtime
from authz.workflows import clients
from authz.workflows.records import current_revision
from models import (
    Attachment,
    AttachmentRequest,
    Base,
    HistoryEntry,
    OutboxMail,
    Structure,
    Subscription,
    SubscriptionRequest,
)

from . import consent
from .conftest import FAST_HASH, PASSWORD, POSTGRES_URL, Api, activation_token, outbox

ATT = "/v1/attachment-requests"
SUB = "/v1/subscription-requests"
BASE = {"attachment": ATT, "subscription": SUB}
KINDS = ("attachment", "subscription")
# What a validated request of each kind gives its requester (space, action):
# an attachment gives the role's defaults (spaces.yaml: my_account for simple
# users), a subscription the asked space.
GRANT = {"attachment": ("my_account", "consult"), "subscription": ("issued_invoices", "consult")}
DESIGNATION = "Boulangerie Martin"
UTC = dt.timezone.utc


def utc_today() -> dt.date:
    return dt.datetime.now(UTC).date()


# --- one database and one app per module ------------------------------------------


@pytest.fixture(scope="module")
def shared_app(migrated_template, tmp_path_factory):
    """A freshly migrated, empty database (SQLite copy, or the PostgreSQL one
    emptied) and the app on it, for the whole module."""
    var = tmp_path_factory.mktemp("shared")
    if POSTGRES_URL:
        engine = make_engine(load_settings({"database_url": POSTGRES_URL}))
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            conn.execute(
                text(
                    "INSERT INTO policy_revision (id, revision, updated_at) "
                    "VALUES (1, 0, CURRENT_TIMESTAMP)"
                )
            )
        engine.dispose()
        # Commits need not wait for the WAL to reach the disk: durability after
        # a crash of the server is not under test; visibility, locking and
        # atomicity, which are, stay the same. A third off this module's time.
        url = (
            POSTGRES_URL
            + ("&" if "?" in POSTGRES_URL else "?")
            + "options=-c%20synchronous_commit%3Doff"
        )
    else:
        shutil.copy(migrated_template, var / "authz.db")
        url = f"sqlite:///{var / 'authz.db'}"
    app = create_app(
        {
            "database_url": url,
            "var_dir": str(var / "var"),
            "mail_background": False,
            "public_base_url": "http://authz.test",
            **FAST_HASH,
        }
    )
    app.config["TESTING"] = True
    yield app
    close_runtime(app.extensions["authz"])


@pytest.fixture
def app(shared_app):
    """Overrides conftest's per-test app: `rt`, `client` and `api` use this one."""
    return shared_app


_test_numbers = itertools.count(1)
_names = {"test": 0}
_key_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def own_names():
    """Each test gets its own number, used to make its addresses unique."""
    _names["test"] = next(_test_numbers)


def addr(email: str) -> str:
    """`email`, made unique to the running test (julien@x → julien.t12@x)."""
    local, domain = email.split("@")
    return f"{local}.t{_names['test']}@{domain}"


def _sirets():
    for n in itertools.count(44_306_184_100_000):
        if siret.is_valid(str(n)):
            yield str(n)


_siret = _sirets()


@pytest.fixture
def structure_of(api):
    """Overrides conftest's: a new private structure with a never-used SIRET."""

    def make(owner: Api, designation: str = "ACME SARL", **extra) -> dict:
        r = owner.post(
            "/v1/structures",
            json={
                "identifier_type": "SIRET",
                "identifier_value": next(_siret),
                "designation": designation,
                **extra,
            },
        )
        assert r.status_code == 201, r.json
        return r.json

    return make


# --- people, structures, requests ---------------------------------------------


def person(
    api: Api, login: str, first: str = "Ada", last: str = "Lovelace", *, contact: str | None = None
) -> Api:
    """Sign up (with a contact email other than the login one if given),
    activate, log in. Addresses are made unique to the test (see `addr`)."""
    login = addr(login)
    extra = {"contact_email": addr(contact)} if contact else {}
    created = api.signup(login, first, last, **extra)
    assert created.status_code == 201, created.json
    activated = api.client.post(
        "/v1/accounts/activation",
        json={"token": activation_token(api.rt, login), "password": PASSWORD},
    )
    assert activated.status_code == 200, activated.json
    login_r = api.client.post("/v1/auth/token", json={"login_email": login, "password": PASSWORD})
    assert login_r.status_code == 201, login_r.json
    return Api(api.client, api.rt, login_r.json["access_token"], created.json)


def login_of(who: Api) -> str:
    return who.user["login_email"]


def contact_of(who: Api) -> str:
    return who.user["contact_email"]


@dataclass
class Bakery:
    """A private structure whose principal is Claire, with services ATELIER and
    BOUTIQUE (active) and ANCIEN (inactive); works_invoices is opened on ATELIER."""

    id: int
    siret: str
    claire: Api
    services: dict[str, int]


def make_bakery(api: Api, structure_of) -> Bakery:
    claire = person(api, "claire.martin@boulangerie.example", "Claire", "Martin")
    st = structure_of(claire, DESIGNATION)
    sid, services = st["id"], {}
    for code in ("ATELIER", "BOUTIQUE", "ANCIEN"):
        r = claire.post(
            f"/v1/structures/{sid}/services", json={"code": code, "label": code.title()}
        )
        assert r.status_code == 201, r.json
        services[code] = r.json["id"]
    off = claire.patch(
        f"/v1/structures/{sid}/services/{services['ANCIEN']}", json={"active": False}
    )
    assert off.status_code == 200
    spaces = claire.get(f"/v1/structures/{sid}/spaces").json["spaces"]
    opened = claire.put(
        f"/v1/structures/{sid}/spaces",
        json={"spaces": [*spaces, {"space": "works_invoices", "service_id": services["ATELIER"]}]},
    )
    assert opened.status_code == 200, opened.json
    return Bakery(sid, st["identifier_value"], claire, services)


@pytest.fixture
def bakery(api, structure_of) -> Bakery:
    return make_bakery(api, structure_of)


def attach_directly(
    manager: Api,
    structure_id: int,
    login: str,
    *,
    role: str = "simple",
    service_ids: list[int] | None = None,
    **extra,
) -> list[dict]:
    return consent.attach(
        manager,
        structure_id,
        {
            "login_email": login,
            "role": role,
            "whole_structure": not service_ids,
            "service_ids": service_ids or [],
            **extra,
        },
    )


def attached(
    api: Api,
    bakery: Bakery,
    login: str,
    *,
    role: str = "simple",
    services: list[str] | None = None,
    contact: str | None = None,
    **extra,
) -> Api:
    """A person the principal attached directly (whole structure by default)."""
    who = person(api, login, contact=contact)
    attach_directly(
        bakery.claire,
        bakery.id,
        login_of(who),
        role=role,
        service_ids=[bakery.services[c] for c in services or []],
        **extra,
    )
    return who


def ask_attachment(
    who: Api,
    structure_id: int,
    service_ids: list[int] | None = None,
    comment: str | None = "Merci de me rattacher",
) -> dict:
    r = who.post(
        ATT,
        json={
            "structure_id": structure_id,
            "whole_structure": not service_ids,
            "service_ids": service_ids or [],
            "comment": comment,
        },
    )
    assert r.status_code == 201, r.json
    return r.json


def lines_of(*lines: tuple[str, int | None, str]) -> list[dict]:
    return [
        {"space": space, "service_id": service_id, "level": level}
        for space, service_id, level in lines
    ]


def ask_subscription(
    who: Api,
    structure_id: int,
    *lines: tuple[str, int | None, str],
    comment: str | None = "J'en ai besoin",
) -> dict:
    r = who.post(
        SUB, json={"structure_id": structure_id, "lines": lines_of(*lines), "comment": comment}
    )
    assert r.status_code == 201, r.json
    return r.json


def pending_request(
    kind: str, api: Api, bakery: Bakery, login: str, *, contact: str | None = None
) -> tuple[Api, dict]:
    """A person with a pending request of `kind` on the bakery: an attachment
    request for the whole structure, or (already attached) a subscription
    request for issued_invoices, consultation."""
    if kind == "attachment":
        who = person(api, login, contact=contact)
        return who, ask_attachment(who, bakery.id)
    who = attached(api, bakery, login, contact=contact)
    return who, ask_subscription(who, bakery.id, ("issued_invoices", None, "consult"))


def process(manager: Api, kind: str, request_id: int, op: str, **body):
    """POST …/{id}/validation or …/{id}/refusal (a refusal gets a reason)."""
    if op == "refusal":
        body.setdefault("reason", "Nous ne vous connaissons pas")
    return manager.post(f"{BASE[kind]}/{request_id}/{op}", json=body)


def bulk(manager: Api, kind: str, ids: list[int], op: str, **body):
    """POST …/validations or …/refusals (a refusal gets a reason)."""
    if op == "refusal":
        body.setdefault("reason", "Nous ne vous connaissons pas")
    return manager.post(f"{BASE[kind]}/{op}s", json={"ids": ids, **body})


# --- database facts -----------------------------------------------------------


def revision(rt) -> int:
    with rt.sessions() as s:
        return current_revision(s)


def snapshot(rt, structure_id: int) -> dict:
    """Everything a request workflow may change, to prove that nothing did."""
    with rt.sessions() as s:

        def rows(model, *cols):
            return sorted(
                tuple(getattr(r, c) for c in cols)
                for r in s.scalars(select(model).where(model.structure_id == structure_id))
            )

        return {
            "revision": current_revision(s),
            "history": rows(HistoryEntry, "id", "action"),
            "mails": s.scalar(select(func.count()).select_from(OutboxMail)),
            "attachments": rows(
                Attachment, "user_id", "service_id", "role", "status", "valid_from"
            ),
            "subscriptions": rows(
                Subscription, "user_id", "space_code", "service_id", "level", "status"
            ),
            "attachment_requests": rows(AttachmentRequest, "id", "status"),
            "subscription_requests": rows(SubscriptionRequest, "id", "status"),
        }


def request_status(rt, kind: str, request_id: int) -> str:
    model = AttachmentRequest if kind == "attachment" else SubscriptionRequest
    with rt.sessions() as s:
        return s.get(model, request_id).status


def key_headers(rt) -> dict:
    """A client application's API key (authz.workflows.clients.create_client)."""
    with rt.sessions() as s:
        _, key = clients.create_client(s, rt, f"portal-{next(_key_numbers)}")
    return {"Authorization": f"Bearer {key}"}


def check(
    caller: Api,
    user_id: int,
    structure_id: int,
    space: str | None,
    action: str,
    *,
    service: str | None = None,
    at: int | None = None,
    headers: dict | None = None,
) -> dict:
    """POST /v1/checks: a decision taken at least at revision `at`."""
    body = {
        "user_id": user_id,
        "structure_id": structure_id,
        "space": space,
        "action": action,
        "service": service,
    }
    if at is not None:
        body["at_least_revision"] = at
    r = caller.post("/v1/checks", json=body, headers=headers)
    assert r.status_code == 200, r.json
    if at is not None:
        assert r.json["revision"] >= at
    return r.json


def allowed(
    who: Api,
    structure_id: int,
    space: str | None,
    action: str,
    *,
    service: str | None = None,
    at: int | None = None,
) -> bool:
    """May `who` do this? Asked by `who` about themself."""
    return check(who, who.user["id"], structure_id, space, action, service=service, at=at)[
        "allowed"
    ]


def history(manager: Api, structure_id: int, **filters) -> list[dict]:
    r = manager.get(
        f"/v1/structures/{structure_id}/history", query_string={"page_size": 100, **filters}
    )
    assert r.status_code == 200, r.json
    return r.json["items"]


def notifications(rt, address: str) -> list[OutboxMail]:
    return [m for m in outbox(rt, address) if m.kind == "notification"]


def set_structure_status(rt, structure_id: int, status: str) -> None:
    with rt.sessions() as s:
        s.get(Structure, structure_id).status = status
        s.commit()


def add_attachment(rt, user_id: int, structure_id: int, role: str, **extra) -> None:
    """A row written with the models (for what no workflow here hands out)."""
    with rt.sessions() as s:
        s.add(
            Attachment(
                user_id=user_id,
                structure_id=structure_id,
                role=role,
                status=extra.pop("status", "validated"),
                valid_from=extra.pop("valid_from", utc_today()),
                **extra,
            )
        )
        s.commit()


# === The guide, end to end ======================================================


def test_guide_attachment_requests_end_to_end(api, rt, bakery):
    """List the pending requests, open one, validate it changing role and
    services, refuse another with a reason, validate and refuse in bulk."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    julien = person(
        api, "julien.moreau@login.example", "Julien", "Moreau", contact="julien@contact.example"
    )

    # The user finds the structure by its identifier and asks for the shop.
    found = julien.get(
        "/v1/structures/lookup",
        query_string={"identifier_type": "SIRET", "identifier_value": bakery.siret},
    )
    assert found.status_code == 200 and found.json["id"] == sid
    assert sorted(s["code"] for s in found.json["services"]) == ["ATELIER", "BOUTIQUE"]
    asked = ask_attachment(julien, sid, [svc["BOUTIQUE"]], "Vendeur à la boutique")
    assert asked["status"] == "pending" and asked["service_ids"] == [svc["BOUTIQUE"]]

    # The manager lists the pending requests of the structure…
    listed = claire.get(ATT, query_string={"structure_id": sid, "status": "pending"}).json
    assert [r["id"] for r in listed["items"]] == [asked["id"]]
    # …opens one: structure, requester, comment, every active service and its status…
    detail = claire.get(f"{ATT}/{asked['id']}").json
    assert detail["structure"]["designation"] == DESIGNATION
    assert detail["requester"]["login_email"] == login_of(julien)
    assert detail["requester"]["last_name"] == "Moreau"
    assert detail["request"]["comment"] == "Vendeur à la boutique"
    assert [(s["code"], s["status"], s["preselected"]) for s in detail["services"]] == [
        ("ATELIER", "none", False),
        ("BOUTIQUE", "pending", True),
    ]
    # …and validates it, making him a secondary manager of both services.
    before = revision(rt)
    done = claire.post(
        f"{ATT}/{asked['id']}/validation",
        json={
            "role": "secondary",
            "whole_structure": False,
            "service_ids": [svc["ATELIER"], svc["BOUTIQUE"]],
            "comment": "Bienvenue",
        },
    )
    assert done.status_code == 200, done.json
    assert (done.json["status"], done.json["role"]) == ("validated", "secondary")
    at = revision(rt)
    assert at == before + 1
    for service in ("ATELIER", "BOUTIQUE"):
        assert allowed(julien, sid, "my_account", "modify", service=service, at=at)
        assert allowed(julien, sid, "manager_activities", "consult", service=service, at=at)
        assert not allowed(julien, sid, "issued_invoices", "consult", service=service, at=at)
    assert not allowed(julien, sid, "my_account", "consult", at=at)  # not the whole structure
    assert allowed(julien, sid, None, "attachment_requests.process", at=at)
    assert julien.get(f"/v1/structures/{sid}").status_code == 200
    [mail] = notifications(rt, contact_of(julien))
    assert mail.subject == f"Attachment to {DESIGNATION} validated"

    # Another person asks for the whole structure: refused, with a reason.
    lucie = person(api, "lucie.petit@login.example", "Lucie", "Petit")
    asked = ask_attachment(lucie, sid, comment="Stagiaire")
    refused = claire.post(
        f"{ATT}/{asked['id']}/refusal", json={"reason": "Aucun stage prévu cette année"}
    )
    assert refused.status_code == 200, refused.json
    assert (refused.json["status"], refused.json["reason"]) == (
        "refused",
        "Aucun stage prévu cette année",
    )
    assert not allowed(lucie, sid, "my_account", "consult", at=revision(rt))
    assert lucie.get(f"/v1/structures/{sid}").status_code == 404

    # Bulk: four more people ask; two are validated at once, two refused at once.
    people = [person(api, f"vendeur{i}@login.example") for i in range(4)]
    ids = [ask_attachment(p, sid)["id"] for p in people]
    ok = claire.post(f"{ATT}/validations", json={"ids": ids[:2], "role": "simple"})
    assert ok.status_code == 200, ok.json
    assert ok.json["results"] == [
        {"id": i, "ok": True, "code": None, "detail": None} for i in ids[:2]
    ]
    no = claire.post(f"{ATT}/refusals", json={"ids": ids[2:], "reason": "Effectif complet"})
    assert [(r["id"], r["ok"]) for r in no.json["results"]] == [(i, True) for i in ids[2:]]
    at = revision(rt)
    assert [allowed(p, sid, "my_account", "modify", at=at) for p in people] == [
        True,
        True,
        False,
        False,
    ]
    assert (
        claire.get(ATT, query_string={"structure_id": sid, "status": "pending"}).json["total"] == 0
    )

    comments = [
        (e["action"], e["comment"])
        for e in history(claire, sid, action="attachment_request.")
        if e["action"] != "attachment_request.created"
    ]
    assert sorted(comments) == sorted(
        [("attachment_request.validated", "Validated")] * 3
        + [("attachment_request.refused", "Refused")] * 3
    )


def test_guide_subscription_requests_end_to_end(api, rt, bakery):
    """List the pending subscription requests, open one, validate it switching
    lines between consultation and modification with a comment, refuse
    another, validate and refuse in bulk; every requester is mailed."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    lucie = attached(api, bakery, "lucie.petit@login.example", contact="lucie@contact.example")
    asked = ask_subscription(
        lucie,
        sid,
        ("issued_invoices", None, "consult"),
        ("works_invoices", svc["ATELIER"], "modify"),
        comment="Pour les factures de l'atelier",
    )

    listed = claire.get(SUB, query_string={"structure_id": sid, "status": "pending"}).json
    assert [r["id"] for r in listed["items"]] == [asked["id"]]
    # Open it: the structure, the requester, the lines and the comment.
    opened = claire.get(f"{SUB}/{asked['id']}")
    assert opened.status_code == 200, opened.json
    opened = opened.json
    assert opened["structure"]["designation"] == DESIGNATION
    assert opened["requester"]["login_email"] == login_of(lucie)
    assert opened["requester"]["contact_email"] == contact_of(lucie)
    assert opened["request"]["comment"] == "Pour les factures de l'atelier"
    assert (opened["request"]["user_id"], opened["request"]["structure_id"]) == (
        lucie.user["id"],
        sid,
    )
    lines = {(line["space"], line["service_id"]): line for line in opened["request"]["lines"]}
    assert {k: v["level"] for k, v in lines.items()} == {
        ("issued_invoices", None): "consult",
        ("works_invoices", svc["ATELIER"]): "modify",
    }

    # Validate, switching each line to the other level, with a comment.
    done = claire.post(
        f"{SUB}/{asked['id']}/validation",
        json={
            "lines": [
                {"id": lines[("issued_invoices", None)]["id"], "level": "modify"},
                {"id": lines[("works_invoices", svc["ATELIER"])]["id"], "level": "consult"},
            ],
            "comment": "La consultation suffit pour l'atelier",
        },
    )
    assert done.status_code == 200, done.json
    assert done.json["status"] == "validated"
    assert done.json["manager_comment"] == "La consultation suffit pour l'atelier"
    at = revision(rt)
    expected = [  # (space, service, action, allowed)
        ("issued_invoices", None, "consult", True),
        ("issued_invoices", None, "modify", True),
        ("issued_invoices", None, "create", True),
        ("issued_invoices", "BOUTIQUE", "modify", True),
        ("works_invoices", "ATELIER", "consult", True),
        ("works_invoices", "ATELIER", "modify", False),
        ("works_invoices", "BOUTIQUE", "consult", False),
        ("issued_solicitations", None, "consult", False),
    ]
    got = [
        (space, service, action, allowed(lucie, sid, space, action, service=service, at=at))
        for space, service, action, _ in expected
    ]
    assert got == expected
    mail = notifications(rt, contact_of(lucie))[-1]
    assert mail.subject == f"Subscription on {DESIGNATION} validated"
    assert "La consultation suffit pour l'atelier" in mail.body

    # A second request is refused with a reason: nothing more is granted.
    again = ask_subscription(lucie, sid, ("issued_solicitations", None, "consult"))
    refused = claire.post(f"{SUB}/{again['id']}/refusal", json={"reason": "Pas utile"})
    assert refused.status_code == 200 and refused.json["status"] == "refused"
    assert not allowed(lucie, sid, "issued_solicitations", "consult", at=revision(rt))
    mail = notifications(rt, contact_of(lucie))[-1]
    assert mail.subject == f"Subscription on {DESIGNATION} refused"
    assert "Pas utile" in mail.body

    # Bulk: two people's requests validated as asked, two refused, at once.
    people = [attached(api, bakery, f"vendeur{i}@login.example") for i in range(4)]
    ids = [ask_subscription(p, sid, ("issued_solicitations", None, "modify"))["id"] for p in people]
    ok = claire.post(f"{SUB}/validations", json={"ids": ids[:2], "comment": "OK"})
    assert ok.status_code == 200, ok.json
    assert [(r["id"], r["ok"]) for r in ok.json["results"]] == [(i, True) for i in ids[:2]]
    no = claire.post(f"{SUB}/refusals", json={"ids": ids[2:], "reason": "Non"})
    assert [(r["id"], r["ok"]) for r in no.json["results"]] == [(i, True) for i in ids[2:]]
    at = revision(rt)
    assert [allowed(p, sid, "issued_solicitations", "modify", at=at) for p in people] == [
        True,
        True,
        False,
        False,
    ]
    for i, p in enumerate(people):
        subject = notifications(rt, contact_of(p))[-1].subject
        assert subject == f"Subscription on {DESIGNATION} {'validated' if i < 2 else 'refused'}"

    comments = [
        (e["action"], e["comment"])
        for e in history(claire, sid, action="subscription_request.")
        if e["action"] != "subscription_request.created"
    ]
    assert sorted(comments) == sorted(
        [("subscription_request.validated", "Validated")] * 3
        + [("subscription_request.refused", "Deactivated")] * 3
    )


def test_guide_direct_attachment_and_removal_end_to_end(api, rt, bakery):
    """Attach a user directly (by login email: role, start date, comment,
    services), then remove the attachment: the rights come and go."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    paul = person(
        api, "paul.bernard@login.example", "Paul", "Bernard", contact="paul@contact.example"
    )
    made = attach_directly(
        claire,
        sid,
        login_of(paul).capitalize(),
        role="secondary",
        service_ids=[svc["BOUTIQUE"]],
        valid_from=utc_today().isoformat(),
        comment="Responsable de la boutique",
    )
    assert [
        (a["user_id"], a["service_id"], a["role"], a["status"], a["valid_from"]) for a in made
    ] == [(paul.user["id"], svc["BOUTIQUE"], "secondary", "validated", utc_today().isoformat())]
    at = revision(rt)
    assert allowed(paul, sid, "my_account", "modify", service="BOUTIQUE", at=at)
    assert not allowed(paul, sid, "my_account", "modify", service="ATELIER", at=at)
    assert allowed(paul, sid, None, "attachments.create", at=at)
    # Paul's account is active: he was invited, and accepted (tests/consent.py).
    [mail] = notifications(rt, contact_of(paul))
    assert mail.subject == f"Invitation to join {DESIGNATION}"

    removed = claire.delete(f"/v1/structures/{sid}/attachments/{paul.user['id']}")
    assert removed.status_code == 204
    after = revision(rt)
    assert after > at
    decision = check(
        paul, paul.user["id"], sid, "my_account", "consult", service="BOUTIQUE", at=after
    )
    assert not decision["allowed"] and "no validated attachment" in decision["reason"]
    assert not allowed(paul, sid, None, "attachments.create", at=after)
    assert paul.get(f"/v1/structures/{sid}").status_code == 404
    assert notifications(rt, contact_of(paul))[-1].subject == f"Detached from {DESIGNATION}"
    entries = history(claire, sid, user_id=paul.user["id"])
    assert [(e["action"], e["comment"]) for e in entries] == [
        ("attachment.deleted", "Deleted"),
        ("invitation.accepted", "Invitation accepted"),
        ("invitation.created", "Invited"),
    ]


# === Concurrency and atomicity =================================================


@pytest.mark.parametrize(
    "kind, ops",
    [
        ("attachment", ("validation",)),
        ("subscription", ("validation",)),
        ("attachment", ("validation", "refusal")),
    ],
)
def test_a_request_is_processed_once_under_concurrency(app, api, rt, bakery, kind, ops):
    """16 managers' clicks at the same instant: exactly one wins, the others get
    409 request_processed; one history entry, one mail, one revision bump."""
    requester, req = pending_request(kind, api, bakery, "julien@login.example")
    before = snapshot(rt, bakery.id)
    threads_n = 16
    barrier = threading.Barrier(threads_n)
    results: list = [None] * threads_n
    token = bakery.claire.token

    def click(i: int) -> None:
        client = app.test_client()
        op = ops[i % len(ops)]
        body = {"reason": "Refusée"} if op == "refusal" else {}
        try:
            barrier.wait(timeout=30)
            r = client.post(
                f"{BASE[kind]}/{req['id']}/{op}",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
            results[i] = (op, r.status_code, r.get_json())
        except Exception as exc:  # reported below, not lost in the thread
            results[i] = (op, "exception", repr(exc))

    threads = [threading.Thread(target=click, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert all(r is not None for r in results), results
    winners = [r for r in results if r[1] == 200]
    losers = [r for r in results if r[1] != 200]
    assert len(winners) == 1, results
    assert {(status, body["code"]) for _, status, body in losers} == {(409, "request_processed")}, (
        results
    )
    final = "validated" if winners[0][0] == "validation" else "refused"
    assert request_status(rt, kind, req["id"]) == final
    after = snapshot(rt, bakery.id)
    new_entries = [
        action
        for entry_id, action in after["history"]
        if (entry_id, action) not in before["history"]
    ]
    assert new_entries == [f"{kind}_request.{final}"]
    assert after["mails"] == before["mails"] + 1
    assert after["revision"] == before["revision"] + (1 if final == "validated" else 0)
    space, action = GRANT[kind]
    assert allowed(requester, bakery.id, space, action, at=after["revision"]) == (
        final == "validated"
    )


def _written(session, kind: str, request_id: int, user_id: int) -> tuple:
    """What the transaction has written so far: the request's status and the
    user's validated grants of that kind."""
    model = AttachmentRequest if kind == "attachment" else SubscriptionRequest
    grant = Attachment if kind == "attachment" else Subscription
    return (
        session.scalar(select(model.status).where(model.id == request_id)),
        session.scalar(
            select(func.count())
            .select_from(grant)
            .where(grant.user_id == user_id, grant.status == "validated")
        ),
    )


def _fail_after(real, *, call_real: bool, seen: list, witness):
    """A stand-in that does the real work (when asked), flushes everything
    written so far to the database, notes it, then fails: what a crash just
    before COMMIT leaves in the transaction."""

    def failing(session, *args, **kwargs):
        if call_real:
            real(session, *args, **kwargs)
        session.flush()
        seen.append(witness(session))
        raise RuntimeError("injected failure before commit")

    return failing


# Where a failure is injected, after the grant is written: the names as the
# workflow module looks them up (both import `notify` from records, whose
# `notify` calls records' `queue_mail`).
FAILURE_POINTS = {
    "attachment": [
        ("validation", "authz.workflows.attachments", "notify"),
        ("validation", "authz.workflows.records", "queue_mail"),
        ("validation", "authz.workflows.attachments", "commit"),
        ("refusal", "authz.workflows.attachments", "notify"),
        ("refusal", "authz.workflows.attachments", "commit"),
    ],
    "subscription": [
        ("validation", "authz.workflows.subscriptions", "notify"),
        ("validation", "authz.workflows.records", "queue_mail"),
        ("validation", "authz.workflows.subscriptions", "commit"),
        ("refusal", "authz.workflows.subscriptions", "notify"),
        ("refusal", "authz.workflows.subscriptions", "commit"),
    ],
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_failure_before_commit_leaves_nothing_half_applied(api, rt, bakery, monkeypatch, kind):
    """The grant, its history entry, its mail and the revision bump are one
    transaction: a crash after the grant was written leaves the request
    pending, no grant, no entry, no mail, the revision and the decision as
    they were, and the caller a 500 problem."""
    requester, req = pending_request(kind, api, bakery, "julien@login.example")
    before = snapshot(rt, bakery.id)
    space, action = GRANT[kind]
    for op, module, name in FAILURE_POINTS[kind]:
        target = importlib.import_module(module)
        seen: list = []
        monkeypatch.setattr(
            target,
            name,
            _fail_after(
                getattr(target, name),
                call_real=name != "commit",
                seen=seen,
                witness=lambda session: _written(session, kind, req["id"], requester.user["id"]),
            ),
        )
        r = process(bakery.claire, kind, req["id"], op)
        monkeypatch.undo()
        where = (op, module, name)
        # The failure came after the request was claimed and the grant written…
        assert seen == [("validated", 1) if op == "validation" else ("refused", 0)], where
        # …and none of it survived.
        assert r.status_code == 500, where
        assert r.content_type == "application/problem+json"
        assert r.json["code"] == "internal_error", where
        assert "injected" not in r.get_data(as_text=True)  # no internals leak
        assert snapshot(rt, bakery.id) == before, where
        assert request_status(rt, kind, req["id"]) == "pending", where
        decision = check(requester, requester.user["id"], bakery.id, space, action)
        assert not decision["allowed"] and decision["revision"] == before["revision"], where
    # Nothing was left locked or half-done: without the fault, it goes through.
    assert process(bakery.claire, kind, req["id"], "validation").status_code == 200
    assert allowed(requester, bakery.id, space, action, at=revision(rt))


# === Rules =====================================================================


def make_actor(kind_of_actor: str, api: Api, rt, bakery: Bakery, structure_of) -> Api:
    """Someone who is not a manager of the bakery, in one of several ways."""
    email = f"{kind_of_actor}@login.example"
    if kind_of_actor == "simple":
        return attached(api, bakery, email)
    who = person(api, email)
    if kind_of_actor == "technical":
        add_attachment(rt, who.user["id"], bakery.id, "technical")
    elif kind_of_actor == "other_manager":
        structure_of(who, "Autre Boulangerie")
    elif kind_of_actor == "future_secondary":
        attach_directly(
            bakery.claire,
            bakery.id,
            login_of(who),
            role="secondary",
            valid_from=(utc_today() + dt.timedelta(days=1)).isoformat(),
        )
    elif kind_of_actor == "removed_secondary":
        attach_directly(bakery.claire, bakery.id, login_of(who), role="secondary")
        assert (
            bakery.claire.delete(
                f"/v1/structures/{bakery.id}/attachments/{who.user['id']}"
            ).status_code
            == 204
        )
    return who


# Who may not act on the bakery's requests, and the answer they get: a simple or
# technical member sees the structure but may not act (403); the others do not
# even see it (404, as for an unknown request).
NOT_MANAGERS = [
    ("simple", 403, "action_not_allowed"),
    ("technical", 403, "action_not_allowed"),
    ("other_manager", 404, "not_found"),
    ("stranger", 404, "not_found"),
    ("future_secondary", 404, "not_found"),
    ("removed_secondary", 404, "not_found"),
]


@pytest.mark.parametrize("kind", KINDS)
def test_only_managers_of_that_structure_act_on_its_requests(api, rt, bakery, structure_of, kind):
    _, req = pending_request(kind, api, bakery, "julien@login.example")
    base = BASE[kind]
    for actor, status, code in NOT_MANAGERS:
        who = make_actor(actor, api, rt, bakery, structure_of)
        before = snapshot(rt, bakery.id)
        assert who.get(f"{base}/{req['id']}").status_code == 404, actor
        assert req["id"] not in [r["id"] for r in who.get(base).json["items"]], actor
        for op in ("validation", "refusal"):
            r = process(who, kind, req["id"], op)
            assert (r.status_code, r.json["code"]) == (status, code), (actor, op, r.json)
            r = bulk(who, kind, [req["id"]], op)
            assert r.status_code == 200
            assert [(o["ok"], o["code"]) for o in r.json["results"]] == [(False, code)], actor
        assert snapshot(rt, bakery.id) == before, actor
        assert request_status(rt, kind, req["id"]) == "pending"


@pytest.mark.parametrize("kind", KINDS)
def test_principal_and_secondary_managers_process_requests(api, rt, bakery, kind):
    paul = attached(api, bakery, "paul@login.example", role="secondary")
    for i, manager in enumerate((bakery.claire, paul)):
        requester, req = pending_request(kind, api, bakery, f"julien{i}@login.example")
        assert manager.get(f"{BASE[kind]}/{req['id']}").status_code == 200
        assert process(manager, kind, req["id"], "validation").status_code == 200
        space, action = GRANT[kind]
        assert allowed(requester, bakery.id, space, action, at=revision(rt))


@pytest.mark.parametrize("kind", KINDS)
def test_nobody_validates_or_refuses_their_own_request(api, rt, bakery, kind):
    """A secondary manager of ATELIER asks for more; they may not decide it."""
    svc = bakery.services
    paul = attached(api, bakery, "paul@login.example", role="secondary", services=["ATELIER"])
    if kind == "attachment":
        req = ask_attachment(paul, bakery.id, [svc["BOUTIQUE"]])
    else:
        req = ask_subscription(paul, bakery.id, ("works_invoices", svc["ATELIER"], "modify"))
    before = snapshot(rt, bakery.id)
    for op in ("validation", "refusal"):
        r = process(paul, kind, req["id"], op)
        assert (r.status_code, r.json["code"]) == (403, "own_request"), r.json
        r = bulk(paul, kind, [req["id"]], op)
        assert [(o["ok"], o["code"]) for o in r.json["results"]] == [(False, "own_request")]
    assert snapshot(rt, bakery.id) == before
    # Another manager of the structure may; Paul stays a secondary manager.
    r = process(bakery.claire, kind, req["id"], "validation")
    assert r.status_code == 200, r.json
    at = revision(rt)
    assert allowed(paul, bakery.id, None, "attachment_requests.process", at=at)
    if kind == "attachment":
        assert allowed(paul, bakery.id, "manager_activities", "consult", service="BOUTIQUE", at=at)


def test_validation_keeps_the_requesters_role_unless_the_manager_changes_it(api, rt, bakery):
    """The role is the requester's current one (simple for a newcomer) unless
    the manager picks another: validating a secondary manager's request for one
    more service, unit or bulk, does not demote them."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    paul = attached(api, bakery, "paul@login.example", role="secondary", services=["ATELIER"])
    anne = attached(api, bakery, "anne@login.example", role="secondary", services=["ATELIER"])
    nina = person(api, "nina@login.example")
    unit = process(
        claire, "attachment", ask_attachment(paul, sid, [svc["BOUTIQUE"]])["id"], "validation"
    )
    assert (unit.status_code, unit.json["role"]) == (200, "secondary"), unit.json
    ids = [ask_attachment(anne, sid, [svc["BOUTIQUE"]])["id"], ask_attachment(nina, sid)["id"]]
    r = claire.post(f"{ATT}/validations", json={"ids": ids})
    assert [o["ok"] for o in r.json["results"]] == [True, True], r.json
    at = revision(rt)
    for who, manager in ((paul, True), (anne, True), (nina, False)):
        for service in ("ATELIER", "BOUTIQUE") if manager else (None,):
            assert (
                allowed(who, sid, "manager_activities", "consult", service=service, at=at)
                is manager
            )
        assert allowed(who, sid, None, "attachment_requests.process", at=at) is manager
    # A manager who means to change the role says so.
    demoted = person(api, "marc@login.example")
    attach_directly(claire, sid, login_of(demoted), role="secondary", service_ids=[svc["ATELIER"]])
    req = ask_attachment(demoted, sid, [svc["BOUTIQUE"]])
    r = process(claire, "attachment", req["id"], "validation", role="simple")
    assert (r.status_code, r.json["role"]) == (200, "simple")
    assert not allowed(demoted, sid, None, "attachment_requests.process", at=revision(rt))


def test_the_manager_chooses_the_services_and_role_at_validation(api, rt, bakery, structure_of):
    """Services unchecked at validation are refused, services added are granted;
    only services of this structure and the roles secondary or simple are taken."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    bob = person(api, "bob@login.example")
    theirs = structure_of(bob, "Bob SARL")
    foreign = bob.post(
        f"/v1/structures/{theirs['id']}/services", json={"code": "X", "label": "X"}
    ).json["id"]
    marc = person(api, "marc@login.example")
    req = ask_attachment(marc, sid, [svc["ATELIER"], svc["BOUTIQUE"]])
    before = snapshot(rt, sid)
    for body, code in (
        ({"whole_structure": False, "service_ids": [foreign]}, "unknown_service"),
        ({"whole_structure": False, "service_ids": [svc["ANCIEN"]]}, "unknown_service"),
        ({"whole_structure": False, "service_ids": []}, "invalid_scope"),
        ({"role": "principal"}, "validation_failed"),
        ({"role": "technical"}, "validation_failed"),
    ):
        r = process(claire, "attachment", req["id"], "validation", **body)
        assert (r.status_code, r.json["code"]) == (422, code), body
    assert snapshot(rt, sid) == before
    r = process(
        claire,
        "attachment",
        req["id"],
        "validation",
        whole_structure=False,
        service_ids=[svc["ATELIER"]],
        role="secondary",
    )
    assert r.status_code == 200, r.json
    at = revision(rt)
    assert allowed(marc, sid, "my_account", "consult", service="ATELIER", at=at)
    assert not allowed(marc, sid, "my_account", "consult", service="BOUTIQUE", at=at)
    detail = claire.get(f"{ATT}/{req['id']}").json
    assert {(s["code"], s["status"]) for s in detail["services"]} == {
        ("ATELIER", "validated"),
        ("BOUTIQUE", "refused"),
    }
    # A whole-structure request validated for one service only.
    nina = person(api, "nina@login.example")
    req = ask_attachment(nina, sid)
    r = process(
        claire,
        "attachment",
        req["id"],
        "validation",
        whole_structure=False,
        service_ids=[svc["BOUTIQUE"]],
    )
    assert r.status_code == 200, r.json
    at = revision(rt)
    assert allowed(nina, sid, "my_account", "consult", service="BOUTIQUE", at=at)
    assert not allowed(nina, sid, "my_account", "consult", at=at)


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_is_processed_at_most_once(api, rt, bakery, kind):
    for first, second in itertools.product(("validation", "refusal"), repeat=2):
        _, req = pending_request(kind, api, bakery, f"{first}.{second}@login.example")
        assert process(bakery.claire, kind, req["id"], first).status_code == 200
        before = snapshot(rt, bakery.id)
        again = process(bakery.claire, kind, req["id"], second)
        assert (again.status_code, again.json["code"]) == (409, "request_processed")
        again = bulk(bakery.claire, kind, [req["id"]], second)
        assert [(o["ok"], o["code"]) for o in again.json["results"]] == [
            (False, "request_processed")
        ]
        assert snapshot(rt, bakery.id) == before, (first, second)
        assert request_status(rt, kind, req["id"]) == (
            "validated" if first == "validation" else "refused"
        )


# (space, service, action, allowed) for a simple user attached to BOUTIQUE with a
# validated consultation subscription to issued_invoices on BOUTIQUE.
EXACT_GRANTS = [
    ("issued_invoices", "BOUTIQUE", "consult", True),
    ("issued_invoices", "BOUTIQUE", "modify", False),
    ("issued_invoices", "BOUTIQUE", "create", False),
    ("issued_invoices", None, "consult", False),  # granted on one service only
    ("issued_invoices", "ATELIER", "consult", False),  # not attached there
    ("works_invoices", "BOUTIQUE", "consult", False),  # no subscription, not opened
    ("issued_solicitations", "BOUTIQUE", "consult", False),
    ("my_account", "BOUTIQUE", "modify", True),  # simple users' default (spaces.yaml)
    ("manager_activities", "BOUTIQUE", "consult", False),
    (None, None, "structure.view", True),
    (None, None, "attachment_requests.process", False),
    (None, None, "attachments.create", False),
]


def test_a_validated_attachment_and_subscription_allow_exactly_what_was_granted(api, rt, bakery):
    svc = bakery.services
    marc = person(api, "marc@login.example")
    req = ask_attachment(marc, bakery.id, [svc["BOUTIQUE"]])
    assert process(bakery.claire, "attachment", req["id"], "validation").status_code == 200
    req = ask_subscription(marc, bakery.id, ("issued_invoices", svc["BOUTIQUE"], "consult"))
    assert process(bakery.claire, "subscription", req["id"], "validation").status_code == 200
    at = revision(rt)
    key = key_headers(rt)
    got = []
    for space, service, action, _ in EXACT_GRANTS:
        mine = check(marc, marc.user["id"], bakery.id, space, action, service=service, at=at)
        theirs = check(
            api, marc.user["id"], bakery.id, space, action, service=service, at=at, headers=key
        )
        assert mine["allowed"] == theirs["allowed"]
        got.append((space, service, action, mine["allowed"]))
    assert got == EXACT_GRANTS
    rule = check(
        marc, marc.user["id"], bakery.id, "issued_invoices", "consult", service="BOUTIQUE", at=at
    )["rule"]
    assert rule.startswith("subscription:")


def test_an_attachment_grants_nothing_before_its_start_date(api, rt, bakery):
    """Direct attachment from a future date (with the structure's default spaces,
    validated at once): denied now, allowed from the start date."""
    claire, sid = bakery.claire, bakery.id
    assert (
        claire.patch(
            f"/v1/structures/{sid}", json={"default_spaces": ["issued_invoices"]}
        ).status_code
        == 200
    )
    paul = person(api, "paul@login.example")
    start = utc_today() + dt.timedelta(days=3)
    attach_directly(claire, sid, login_of(paul), valid_from=start.isoformat())
    [default] = claire.get(SUB, query_string={"structure_id": sid, "status": "pending"}).json[
        "items"
    ]
    assert (default["user_id"], default["origin"]) == (paul.user["id"], "default_spaces")
    assert process(claire, "subscription", default["id"], "validation").status_code == 200
    at = revision(rt)
    key = key_headers(rt)  # log-in tokens expire; a client key does not

    def decisions() -> list[bool]:
        return [
            check(api, paul.user["id"], sid, space, "consult", at=at, headers=key)["allowed"]
            for space in ("my_account", "issued_invoices")
        ]

    assert decisions() == [False, False]
    assert paul.get(f"/v1/structures/{sid}").status_code == 404
    moments = [
        (start - dt.timedelta(days=1), dt.time(23, 59), [False, False]),
        (start, dt.time(0, 1), [True, True]),
        (start + dt.timedelta(days=400), dt.time(12), [True, True]),
    ]  # no end date
    for day, time, expected in moments:
        with time_machine.travel(dt.datetime.combine(day, time, tzinfo=UTC), tick=False):
            assert decisions() == expected, day


def test_an_attachment_request_validated_from_a_later_date_grants_from_that_date(api, rt, bakery):
    julien, req = pending_request("attachment", api, bakery, "julien@login.example")
    start = utc_today() + dt.timedelta(days=2)
    r = process(bakery.claire, "attachment", req["id"], "validation", valid_from=start.isoformat())
    assert r.status_code == 200, r.json
    at, key = revision(rt), key_headers(rt)

    def may_consult() -> bool:
        return check(
            api, julien.user["id"], bakery.id, "my_account", "consult", at=at, headers=key
        )["allowed"]

    assert not may_consult()
    with time_machine.travel(dt.datetime.combine(start, dt.time(8), tzinfo=UTC), tick=False):
        assert may_consult()


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_request_grants_nothing(api, rt, bakery, kind):
    requester, req = pending_request(kind, api, bakery, "julien@login.example")
    before = revision(rt)
    assert process(bakery.claire, kind, req["id"], "refusal").status_code == 200
    assert revision(rt) == before  # no right changed
    space, action = GRANT[kind]
    assert not check(requester, requester.user["id"], bakery.id, space, action, at=before)[
        "allowed"
    ]
    with rt.sessions() as s:
        subs = s.scalars(
            select(Subscription).where(Subscription.user_id == requester.user["id"])
        ).all()
        atts = s.scalars(select(Attachment).where(Attachment.user_id == requester.user["id"])).all()
    assert subs == []
    if kind == "attachment":
        assert [a.status for a in atts] == ["refused"]
        assert requester.get(f"/v1/structures/{bakery.id}").status_code == 404


@pytest.mark.parametrize("kind", KINDS)
def test_a_refusal_needs_a_reason(api, rt, bakery, kind):
    _, req = pending_request(kind, api, bakery, "julien@login.example")
    before = snapshot(rt, bakery.id)
    for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": None}):
        r = bakery.claire.post(f"{BASE[kind]}/{req['id']}/refusal", json=body)
        assert r.status_code == 422, body
        assert r.content_type == "application/problem+json"
        assert "reason" in r.json["errors"], body
        r = bakery.claire.post(f"{BASE[kind]}/refusals", json={"ids": [req["id"]], **body})
        assert r.status_code == 422 or [o["code"] for o in r.json["results"]] == [
            "reason_required"
        ], body
    assert snapshot(rt, bakery.id) == before


# Lines a user may not ask for: (space, service, error code).
REFUSED_LINES = [
    ("legal_commitments", None, "space_not_opened"),
    ("works_invoices", "BOUTIQUE", "space_not_opened"),  # opened on ATELIER only
    ("works_invoices", None, "space_not_opened"),
    ("received_invoices", None, "public_only_space"),
    ("received_solicitations", "ATELIER", "public_only_space"),
    ("no_such_space", None, "unknown_space"),
    ("issued_invoices", "ANCIEN", "unknown_service"),  # an inactive service
]


def test_subscription_lines_only_name_spaces_opened_and_allowed_here(api, rt, bakery):
    lucie = attached(api, bakery, "lucie@login.example")
    before = snapshot(rt, bakery.id)
    for space, service, code in REFUSED_LINES:
        r = lucie.post(
            SUB,
            json={
                "structure_id": bakery.id,
                "lines": lines_of(
                    ("issued_invoices", None, "consult"),
                    (space, bakery.services[service] if service else None, "consult"),
                ),
            },
        )
        assert (r.status_code, r.json["code"]) == (422, code), (space, service, r.json)
    assert snapshot(rt, bakery.id) == before


def test_a_line_whose_space_was_closed_since_cannot_be_validated(api, rt, bakery):
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    lucie = attached(api, bakery, "lucie@login.example")
    req = ask_subscription(lucie, sid, ("works_invoices", svc["ATELIER"], "consult"))
    spaces = [
        e
        for e in claire.get(f"/v1/structures/{sid}/spaces").json["spaces"]
        if e["space"] != "works_invoices"
    ]
    assert claire.put(f"/v1/structures/{sid}/spaces", json={"spaces": spaces}).status_code == 200
    before = snapshot(rt, sid)
    r = process(claire, "subscription", req["id"], "validation")
    assert (r.status_code, r.json["code"]) == (422, "space_not_opened")
    assert snapshot(rt, sid) == before


def test_an_inactive_structure_accepts_no_new_attachment_or_request(api, rt, bakery):
    claire, sid = bakery.claire, bakery.id
    lucie = attached(api, bakery, "lucie@login.example")
    early = person(api, "early@login.example")
    early_request = ask_attachment(early, sid)
    julien = person(api, "julien@login.example")
    set_structure_status(rt, sid, "inactive")
    before = snapshot(rt, sid)

    r = julien.post(ATT, json={"structure_id": sid, "whole_structure": True})
    assert (r.status_code, r.json["code"]) == (409, "structure_inactive")
    r = lucie.post(
        SUB, json={"structure_id": sid, "lines": lines_of(("issued_invoices", None, "consult"))}
    )
    assert (r.status_code, r.json["code"]) == (409, "structure_inactive")
    # Nor is anyone attached directly, or through a request made before.
    r = claire.post(
        f"/v1/structures/{sid}/attachments",
        json={"login_email": login_of(julien), "whole_structure": True},
    )
    assert (r.status_code, r.json["code"]) in {
        (403, "action_not_allowed"),
        (409, "structure_inactive"),
    }
    r = process(claire, "attachment", early_request["id"], "validation")
    assert (r.status_code, r.json["code"]) in {
        (403, "action_not_allowed"),
        (409, "structure_inactive"),
    }
    assert snapshot(rt, sid) == before


def test_a_manager_switching_a_line_to_modify_grants_modify(api, rt, bakery):
    lucie = attached(api, bakery, "lucie@login.example")
    req = ask_subscription(
        lucie,
        bakery.id,
        ("issued_invoices", None, "consult"),
        ("issued_solicitations", None, "consult"),
    )
    line = next(li for li in req["lines"] if li["space"] == "issued_invoices")
    unknown = process(
        bakery.claire,
        "subscription",
        req["id"],
        "validation",
        lines=[{"id": 999_999, "level": "modify"}],
    )
    assert (unknown.status_code, unknown.json["code"]) == (422, "unknown_line")
    r = process(
        bakery.claire,
        "subscription",
        req["id"],
        "validation",
        lines=[{"id": line["id"], "level": "modify"}],
    )
    assert r.status_code == 200, r.json
    assert {li["space"]: li["level"] for li in r.json["lines"]} == {
        "issued_invoices": "modify",
        "issued_solicitations": "consult",
    }
    at = revision(rt)
    assert allowed(lucie, bakery.id, "issued_invoices", "modify", at=at)
    assert allowed(lucie, bakery.id, "issued_invoices", "create", at=at)
    assert not allowed(lucie, bakery.id, "issued_solicitations", "modify", at=at)
    with rt.sessions() as s:
        levels = {
            sub.space_code: sub.level
            for sub in s.scalars(
                select(Subscription).where(Subscription.user_id == lucie.user["id"])
            )
        }
    assert levels == {"issued_invoices": "modify", "issued_solicitations": "consult"}


@pytest.mark.parametrize("kind", KINDS)
def test_bulk_gives_one_outcome_per_id_and_processes_the_valid_ones(
    api, rt, bakery, structure_of, kind
):
    claire = bakery.claire
    done = pending_request(kind, api, bakery, "done@login.example")[1]["id"]
    assert process(claire, kind, done, "refusal").status_code == 200
    # A pending request on someone else's structure.
    bob = person(api, "bob@login.example")
    other = structure_of(bob, "Bob SARL")
    stranger = person(api, "stranger@login.example")
    if kind == "attachment":
        foreign = ask_attachment(stranger, other["id"])["id"]
    else:
        attach_directly(bob, other["id"], login_of(stranger))
        foreign = ask_subscription(stranger, other["id"], ("issued_invoices", None, "consult"))[
            "id"
        ]
    unknown = 999_999
    for op in ("validation", "refusal"):
        valid = [
            pending_request(kind, api, bakery, f"{op}{i}@login.example")[1]["id"] for i in range(2)
        ]
        r = bulk(claire, kind, [valid[0], done, foreign, unknown, valid[1]], op)
        assert r.status_code == 200, r.json
        assert [(o["id"], o["ok"], o["code"]) for o in r.json["results"]] == [
            (valid[0], True, None),
            (done, False, "request_processed"),
            (foreign, False, "not_found"),
            (unknown, False, "not_found"),
            (valid[1], True, None),
        ], op
        final = "validated" if op == "validation" else "refused"
        assert [request_status(rt, kind, i) for i in (*valid, done, foreign)] == [
            final,
            final,
            "refused",
            "pending",
        ]


@pytest.mark.parametrize("kind", KINDS)
def test_the_requester_is_notified_at_their_contact_email(api, rt, bakery, kind):
    noun = "Attachment to" if kind == "attachment" else "Subscription on"
    for op, verb in (("validation", "validated"), ("refusal", "refused")):
        requester, req = pending_request(
            kind, api, bakery, f"{op}@login.example", contact=f"{op}@contact.example"
        )
        assert contact_of(requester) != login_of(requester)
        r = process(
            bakery.claire,
            kind,
            req["id"],
            op,
            **({"reason": "Motif du refus"} if op == "refusal" else {}),
        )
        assert r.status_code == 200, r.json
        mail = notifications(rt, contact_of(requester))[-1]
        assert mail.subject == f"{noun} {DESIGNATION} {verb}"
        assert mail.status == "pending"  # in the outbox, for the mail sender
        if op == "refusal":
            assert "Motif du refus" in mail.body
        assert notifications(rt, login_of(requester)) == []


def test_request_detail_lists_active_services_with_the_requesters_status(api, rt, bakery):
    """Every ACTIVE service with the requester's status on it; pending and
    validated ones are preselected."""
    claire, sid, svc = bakery.claire, bakery.id, dict(bakery.services)
    for code in ("CAISSE", "LIVRAISON", "EXTRA"):
        svc[code] = claire.post(
            f"/v1/structures/{sid}/services", json={"code": code, "label": code.title()}
        ).json["id"]
    marc = person(api, "marc@login.example")
    attach_directly(claire, sid, login_of(marc), service_ids=[svc["ATELIER"]])
    first = ask_attachment(marc, sid, [svc["BOUTIQUE"]])
    assert process(claire, "attachment", first["id"], "refusal").status_code == 200
    add_attachment(
        rt, marc.user["id"], sid, "simple", service_id=svc["CAISSE"], status="deactivated"
    )
    second = ask_attachment(marc, sid, [svc["LIVRAISON"]], comment="Et les livraisons")

    detail = claire.get(f"{ATT}/{second['id']}")
    assert detail.status_code == 200, detail.json
    assert detail.json["request"]["comment"] == "Et les livraisons"
    assert detail.json["whole_structure_status"] == "none"
    assert [(s["code"], s["status"], s["preselected"]) for s in detail.json["services"]] == [
        ("ATELIER", "validated", True),
        ("BOUTIQUE", "refused", False),
        ("CAISSE", "deactivated", False),
        ("EXTRA", "none", False),
        ("LIVRAISON", "pending", True),
    ]  # ANCIEN, inactive, is not listed
    # The requester may read their own request.
    assert marc.get(f"{ATT}/{second['id']}").status_code == 200


@pytest.mark.parametrize("how", ["request", "direct"])
def test_default_spaces_become_a_pending_subscription_request(api, rt, bakery, how):
    claire, sid = bakery.claire, bakery.id
    r = claire.patch(f"/v1/structures/{sid}", json={"default_spaces": ["issued_invoices"]})
    assert r.status_code == 200 and r.json["default_spaces"] == ["issued_invoices"]
    for scope in (None, "BOUTIQUE"):
        service_ids = [bakery.services[scope]] if scope else None
        nina = person(api, f"nina.{scope}@login.example")
        if how == "request":
            req = ask_attachment(nina, sid, service_ids)
            assert process(claire, "attachment", req["id"], "validation").status_code == 200
        else:
            attach_directly(claire, sid, login_of(nina), service_ids=service_ids)
        [made] = claire.get(SUB, query_string={"structure_id": sid, "status": "pending"}).json[
            "items"
        ]
        assert (made["user_id"], made["origin"]) == (nina.user["id"], "default_spaces")
        assert [(li["space"], li["service_id"], li["level"]) for li in made["lines"]] == [
            ("issued_invoices", service_ids[0] if service_ids else None, "consult")
        ]
        assert [r["id"] for r in nina.get(SUB, query_string={"mine": True}).json["items"]] == [
            made["id"]
        ]
        # Asked, not granted: a manager still decides.
        assert not allowed(nina, sid, "issued_invoices", "consult", service=scope, at=revision(rt))
        assert process(claire, "subscription", made["id"], "validation").status_code == 200
        assert allowed(nina, sid, "issued_invoices", "consult", service=scope, at=revision(rt))


def test_removing_an_attachment_removes_its_grants(api, rt, bakery):
    claire, sid = bakery.claire, bakery.id
    lucie = attached(api, bakery, "lucie@login.example")
    req = ask_subscription(lucie, sid, ("issued_invoices", None, "modify"))
    assert process(claire, "subscription", req["id"], "validation").status_code == 200
    at = revision(rt)
    assert allowed(lucie, sid, "issued_invoices", "modify", at=at)

    r = claire.delete(f"/v1/structures/{sid}/attachments/{lucie.user['id']}")
    assert r.status_code == 204
    after = revision(rt)
    assert after == at + 1
    for space, action in (("issued_invoices", "consult"), ("my_account", "consult")):
        assert not allowed(lucie, sid, space, action, at=after)
    [entry] = history(claire, sid, action="attachment.deleted")
    assert (entry["comment"], entry["target_user_id"], entry["actor_id"]) == (
        "Deleted",
        lucie.user["id"],
        claire.user["id"],
    )
    with rt.sessions() as s:
        assert {
            a.status
            for a in s.scalars(select(Attachment).where(Attachment.user_id == lucie.user["id"]))
        } == {"deleted"}
        assert {
            sub.status
            for sub in s.scalars(
                select(Subscription).where(Subscription.user_id == lucie.user["id"])
            )
        } == {"deactivated"}
    again = claire.delete(f"/v1/structures/{sid}/attachments/{lucie.user['id']}")
    assert (again.status_code, again.json["code"]) == (404, "not_found")


def test_removing_an_attachment_closes_the_users_pending_requests(api, rt, bakery):
    """Once removed, a user's pending requests on the structure are closed: none
    can be validated later and come back to life if they are attached again."""
    claire, sid = bakery.claire, bakery.id
    lucie = attached(api, bakery, "lucie@login.example")
    sub_req = ask_subscription(lucie, sid, ("issued_invoices", None, "modify"))
    att_req = ask_attachment(lucie, sid, [bakery.services["BOUTIQUE"]])
    assert claire.delete(f"/v1/structures/{sid}/attachments/{lucie.user['id']}").status_code == 204
    for kind, req in (("subscription", sub_req), ("attachment", att_req)):
        assert request_status(rt, kind, req["id"]) == "refused", kind
        assert (
            claire.get(BASE[kind], query_string={"structure_id": sid, "status": "pending"}).json[
                "total"
            ]
            == 0
        )
        r = process(claire, kind, req["id"], "validation")
        assert (r.status_code, r.json["code"]) == (409, "request_processed"), kind
    attach_directly(claire, sid, login_of(lucie))
    assert not allowed(lucie, sid, "issued_invoices", "consult", at=revision(rt))


def test_the_principal_cannot_be_removed(api, rt, bakery):
    claire, sid = bakery.claire, bakery.id
    paul = attached(api, bakery, "paul@login.example", role="secondary")
    before = snapshot(rt, sid)
    for remover in (claire, paul):
        r = remover.delete(f"/v1/structures/{sid}/attachments/{claire.user['id']}")
        assert (r.status_code, r.json["code"]) == (409, "user_is_principal")
    assert snapshot(rt, sid) == before
    assert allowed(claire, sid, None, "attachment_requests.process", at=before["revision"])


def test_only_managers_of_that_structure_remove_attachments(api, rt, bakery, structure_of):
    lucie = attached(api, bakery, "lucie@login.example")
    for actor, status, code in NOT_MANAGERS:
        who = make_actor(actor, api, rt, bakery, structure_of)
        before = snapshot(rt, bakery.id)
        r = who.delete(f"/v1/structures/{bakery.id}/attachments/{lucie.user['id']}")
        assert (r.status_code, r.json["code"]) == (status, code), actor
        assert snapshot(rt, bakery.id) == before, actor
