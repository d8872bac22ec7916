"""The world of the membership tests (tests/membership/): a bakery, people who
ask to join it or to use its spaces, managers who validate, refuse, attach and
remove them, and the decisions that follow.

Those tests share one database per module (tests/membership/conftest.py), so
every test makes its own people: `addr` makes an address unique to the running
test, `next_siret` a SIRET nobody used. Decisions are asked through POST
/v1/checks, by the user about themself or with a client key, at least at the
revision the change was committed at.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

from sqlalchemy import func, select
from stdnum.fr import siret

from authz import roles
from authz.workflows.records import current_revision
from models import (
    Attachment,
    AttachmentRequest,
    HistoryEntry,
    OutboxMail,
    Subscription,
    SubscriptionRequest,
)

from .api import Api, attach_directly, outbox
from .rows import add_attachment

ATT = "/v1/attachment-requests"
SUB = "/v1/subscription-requests"
BASE = {"attachment": ATT, "subscription": SUB}
KINDS = ("attachment", "subscription")
# What a validated request of each kind gives its requester (space, action):
# an attachment gives the role's defaults (spaces.yaml: my_account for simple
# users), a subscription the asked space.
GRANT = {"attachment": ("my_account", "consult"), "subscription": ("issued_invoices", "consult")}
DESIGNATION = "Boulangerie Martin"


# --- names unique to the running test ---------------------------------------------

_test_numbers = itertools.count(1)
_names = {"test": 0}


def next_test() -> None:
    """Give the test about to run a number of its own (see `addr`)."""
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


def next_siret() -> str:
    """A valid SIRET no structure of the run has had."""
    return next(_siret)


# --- people, structures, requests ---------------------------------------------


def person(
    api: Api, login: str, first: str = "Ada", last: str = "Lovelace", *, contact: str | None = None
) -> Api:
    """Sign up (with a contact email other than the login one if given),
    activate, log in. Addresses are made unique to the test (see `addr`)."""
    extra = {"contact_email": addr(contact)} if contact else {}
    return api.person(addr(login), first, last, **extra)


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
    service_ids: list[int | str] | None = None,  # ids or codes
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


def lines_of(*lines: tuple[str, int | str | None, str]) -> list[dict]:
    return [
        {"space": space, "service_id": service_id, "level": level}
        for space, service_id, level in lines
    ]


def ask_subscription(
    who: Api,
    structure_id: int,
    *lines: tuple[str, int | str | None, str],
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
            valid_from=(roles.today() + dt.timedelta(days=1)).isoformat(),
        )
    elif kind_of_actor == "removed_secondary":
        attach_directly(bakery.claire, bakery.id, login_of(who), role="secondary")
        assert (
            bakery.claire.delete(
                f"/v1/structures/{bakery.id}/attachments/{who.user['id']}"
            ).status_code
            == 200
        )
    return who


# --- database facts -----------------------------------------------------------


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


def notifications(rt, address: str) -> list[OutboxMail]:
    return [m for m in outbox(rt, address) if m.kind == "notification"]


def history(manager: Api, structure_id: int, **filters) -> list[dict]:
    r = manager.get(
        f"/v1/structures/{structure_id}/history", query_string={"page_size": 100, **filters}
    )
    assert r.status_code == 200, r.json
    return r.json["items"]


# --- decisions ----------------------------------------------------------------


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
