"""The ten callers of the role × route matrix and of the fuzz run, on one world:
ACME (principal Ada, secondary Sam, simple Sue, Olga whose account ACME made
and who is still pending, a technical user, a service, a
pending attachment request, a pending subscription request, an invitation out),
Bob Corp (principal Bob: another structure's principal), a client application,
an operator and a security reviewer. Every token is real: people's are rows
like a log-in leaves, the technical user's comes from its secret."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from authz.security import digest, new_token
from authz.workflows import operators
from models import AuthToken, Subscription, utcnow

from .api import PASSWORD, Api, create_structure
from .rows import client_key, grant, user_row

# The callers, least powerful first.
CALLERS = (
    "no_token",
    "bad_token",
    "simple",
    "secondary",
    "principal",
    "other_principal",
    "technical",
    "client_key",
    "operator",
    "reviewer",
)


def bearer_token(rt, user_id: int) -> str:
    """A log-in token of `user_id`, as POST /v1/auth/token leaves it."""
    token = new_token("at_")
    with rt.sessions() as s:
        now = utcnow()
        s.add(
            AuthToken(
                user_id=user_id,
                token_hash=digest(token),
                created_at=now,
                expires_at=now + dt.timedelta(hours=8),
            )
        )
        s.commit()
    return token


def person(rt, email: str, first: str, last: str, platform_role: str | None = None) -> int:
    """An active person account whose password is PASSWORD (with a platform
    role if given); its id."""
    with rt.sessions() as s:
        secret = rt.hasher.hash(PASSWORD)
        user = user_row(email, first, last, platform_role=platform_role, password_hash=secret)
        s.add(user)
        s.commit()
        return user.id


# The people of a world: first name, last name, platform role.
PEOPLE = {
    "ada": ("Ada", "Lovelace", None),
    "bob": ("Bob", "Builder", None),
    "sam": ("Sam", "Second", None),
    "sue": ("Sue", "Simple", None),
    "pat": ("Pat", "Pending", None),
    "oscar": ("Oscar", "Ops", operators.OPERATOR),
    "rita": ("Rita", "Reviewer", operators.REVIEWER),
}


@dataclass
class World:
    tokens: dict[str, str | None]  # caller → bearer token (None: no header)
    ids: dict[str, int] = field(default_factory=dict)  # named ids of the world
    names: dict[str, str] = field(default_factory=dict)  # its logins and identifiers

    def headers(self, caller: str) -> dict[str, str]:
        token = self.tokens[caller]
        return {"Authorization": f"Bearer {token}"} if token else {}


def build_world(api: Api, n: int = 0) -> World:
    """The world of the module docstring, through the API where a workflow
    makes it (structures, requests, invitation, technical user). Worlds of
    other numbers `n` live side by side in one database (their own logins
    and identifiers); `World.names` holds world n's logins and identifiers."""
    rt = api.rt
    ids: dict[str, int] = {}
    names = {f"{who}_email": f"{who}{n or ''}@example.org" for who in PEOPLE}
    names |= {"new_email": f"new{n or ''}@example.org"}
    names |= {f"{key}_identifier": f"{key.upper()}{n}" for key in ("acme", "bobs", "new")}
    for who, (first, last, role) in PEOPLE.items():
        ids[who] = person(rt, names[f"{who}_email"], first, last, role)
    tokens: dict[str, str | None] = {
        name: bearer_token(rt, ids[who])
        for name, who in [
            ("principal", "ada"),
            ("other_principal", "bob"),
            ("secondary", "sam"),
            ("simple", "sue"),
            ("operator", "oscar"),
            ("reviewer", "rita"),
        ]
    }
    ada = Api(api.client, rt, tokens["principal"])
    bob = Api(api.client, rt, tokens["other_principal"])
    for key, owner, designation in [("acme", ada, "ACME SARL"), ("bobs", bob, "Bob Corp")]:
        identifier = names[f"{key}_identifier"]
        ids[key] = create_structure(owner, identifier, designation, identifier_type="AUTRE")["id"]
    service = ada.post(
        f"/v1/structures/{ids['acme']}/services", json={"code": "ACC", "label": "Accounts"}
    )
    assert service.status_code == 201, service.json
    ids["service"] = service.json["id"]
    grant(rt, ids["sam"], ids["acme"], role="secondary")
    grant(
        rt,
        ids["sue"],
        ids["acme"],
        subscriptions=(("issued_invoices", "consult", None),),
    )
    with rt.sessions() as s:  # Sue's subscription, for the routes that name one
        ids["subscription"] = s.scalars(
            select(Subscription.id).where(Subscription.user_id == ids["sue"])
        ).one()
    # Pat asks to join ACME; Sue asks for a subscription; Bob is invited to ACME.
    pat = Api(api.client, rt, bearer_token(rt, ids["pat"]))
    asked = pat.post(
        "/v1/attachment-requests",
        json={"structure_id": ids["acme"], "whole_structure": True, "comment": "Hi"},
    )
    assert asked.status_code == 201, asked.json
    ids["attachment_request"] = asked.json["id"]
    sue = Api(api.client, rt, tokens["simple"])
    lines = [{"space": "issued_invoices", "service_id": None, "level": "modify"}]
    subscribing = sue.post(
        "/v1/subscription-requests", json={"structure_id": ids["acme"], "lines": lines}
    )
    assert subscribing.status_code == 201, subscribing.json
    ids["subscription_request"] = subscribing.json["id"]
    invited = ada.post(
        f"/v1/structures/{ids['acme']}/attachments",
        json={"login_email": names["bob_email"], "role": "simple", "whole_structure": True},
    )
    assert invited.status_code == 202, invited.json
    ids["invitation"] = invited.json["id"]
    tech = ada.post(f"/v1/structures/{ids['acme']}/technical-users", json={"label": "ERP"})
    assert tech.status_code == 201, tech.json
    ids["technical"] = tech.json["user_id"]
    got = api.client.post(
        "/v1/auth/technical-token",
        json={"login": tech.json["login"], "secret": tech.json["secret"]},
    )
    assert got.status_code == 200, got.json
    tokens["technical"] = got.json["access_token"]
    names |= {"technical_login": tech.json["login"], "technical_secret": tech.json["secret"]}
    # Olga's account is ACME's own: Ada created it (pending), it is attached nowhere else.
    olga = {"login_email": f"olga{n or ''}@example.org", "first_name": "Olga", "last_name": "Own"}
    owned = ada.post("/v1/accounts", json={**olga, "structure_id": ids["acme"]})
    assert owned.status_code == 201, owned.json
    ids["olga"] = owned.json["id"]
    attached = ada.post(
        f"/v1/structures/{ids['acme']}/attachments",
        json={"user_id": ids["olga"], "role": "simple", "whole_structure": True},
    )
    assert attached.status_code == 201, attached.json
    tokens["client_key"] = client_key(rt)
    tokens["no_token"] = None
    tokens["bad_token"] = "at_" + "x" * 40
    history = ada.get(f"/v1/structures/{ids['acme']}/history")
    assert history.status_code == 200, history.json
    ids["history_entry"] = history.json["items"][0]["id"]
    return World(tokens, ids, names)


def route_matrix() -> dict[str, dict[str, Any]]:
    """tests/route_matrix.yaml: operation → its row (allow, path, query, body)."""
    return yaml.safe_load(MATRIX.read_text(encoding="utf-8"))


def resolve(value: Any, ids: dict[str, int], names: dict[str, str]) -> Any:
    """A row's path, query or body with the world's ids put in: "$name" is the
    id (a number), "{name}" inside a string is the id written out, "$password"
    the people's password; "{pat_email}", "{acme_identifier}": the world's logins
    and identifiers."""
    if isinstance(value, dict):
        return {k: resolve(v, ids, names) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ids, names) for v in value]
    if value == "$password":
        return PASSWORD
    if isinstance(value, str) and value.startswith("$"):
        return ids[value[1:]]
    if isinstance(value, str) and "{" in value:
        return value.format(**ids, **names)
    return value


MATRIX = Path(__file__).resolve().parent.parent / "route_matrix.yaml"
# Every operation of the OpenAPI document, as the matrix lists them (the matrix
# test fails when the document has one the matrix lacks).
OPERATIONS = list(route_matrix())
