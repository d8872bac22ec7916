"""The ten callers of the role × route matrix and of the fuzz run, on one world:
ACME (principal Ada, secondary Sam, simple Sue, a technical user, a service, a
pending attachment request, a pending subscription request, an invitation out),
Bob Corp (principal Bob: another structure's principal), a client application,
an operator and a security reviewer. Every token is real: people's are rows
like a log-in leaves, the technical user's comes from its secret."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from dataclasses import dataclass, field

from authz.security import digest, new_token
from authz.workflows import operators
from models import AuthToken, utcnow

from .api import Api, create_structure
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
    """An active person account (with a platform role if given); its id."""
    with rt.sessions() as s:
        user = user_row(email, first, last, platform_role=platform_role)
        s.add(user)
        s.commit()
        return user.id


@dataclass
class World:
    tokens: dict[str, str | None]  # caller → bearer token (None: no header)
    ids: dict[str, int] = field(default_factory=dict)  # named ids of the world

    def headers(self, caller: str) -> dict[str, str]:
        token = self.tokens[caller]
        return {"Authorization": f"Bearer {token}"} if token else {}


def build_world(api: Api) -> World:
    """The world of the module docstring, through the API where a workflow
    makes it (structures, requests, invitation, technical user)."""
    rt = api.rt
    ids: dict[str, int] = {}
    ids["ada"] = person(rt, "ada@example.org", "Ada", "Lovelace")
    ids["bob"] = person(rt, "bob@example.org", "Bob", "Builder")
    ids["sam"] = person(rt, "sam@example.org", "Sam", "Second")
    ids["sue"] = person(rt, "sue@example.org", "Sue", "Simple")
    ids["pat"] = person(rt, "pat@example.org", "Pat", "Pending")
    ids["oscar"] = person(rt, "oscar@example.org", "Oscar", "Ops", operators.OPERATOR)
    ids["rita"] = person(rt, "rita@example.org", "Rita", "Reviewer", operators.REVIEWER)
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
    ids["acme"] = create_structure(ada, "73282932000074", "ACME SARL")["id"]
    ids["bobs"] = create_structure(bob, "35600000000048", "Bob Corp")["id"]
    service = ada.post(f"/v1/structures/{ids['acme']}/services", json={"code": "ACC", "label": "Accounts"})
    assert service.status_code == 201, service.json
    ids["service"] = service.json["id"]
    grant(rt, ids["sam"], ids["acme"], role="secondary")
    grant(
        rt,
        ids["sue"],
        ids["acme"],
        subscriptions=(("issued_invoices", "consult", None),),
    )
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
        json={"login_email": "bob@example.org", "role": "simple", "whole_structure": True},
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
    assert got.status_code == 201, got.json
    tokens["technical"] = got.json["access_token"]
    tokens["client_key"] = client_key(rt)
    tokens["no_token"] = None
    tokens["bad_token"] = "at_" + "x" * 40
    history = ada.get(f"/v1/structures/{ids['acme']}/history")
    assert history.status_code == 200, history.json
    ids["history_entry"] = history.json["items"][0]["id"]
    return World(tokens, ids)



OPERATIONS = Path("/tmp/fuzz_ops.txt").read_text().split("\n")
