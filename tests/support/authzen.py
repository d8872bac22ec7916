"""The AuthZEN tests' world (tests/authzen/): one structure, four people, a
client application, and the questions they ask."""

from __future__ import annotations

from dataclasses import dataclass

from .api import Api
from .rows import client_key, grant

EVALUATION = "/access/v1/evaluation"
EVALUATIONS = "/access/v1/evaluations"
SUBJECTS = "/access/v1/search/subject"
RESOURCES = "/access/v1/search/resource"
ACTIONS = "/access/v1/search/action"
POST_ROUTES = [EVALUATION, EVALUATIONS, SUBJECTS, RESOURCES, ACTIONS]


@dataclass
class World:
    """One private structure ACME with a service `compta`, and four people:
    ada (principal), bob (simple, whole structure, subscriptions), carol (simple,
    on `compta` only), dave (not attached). `portal` calls with an API key."""

    portal: Api
    people: dict[str, Api]
    st: int
    service_id: int

    def uid(self, name: str) -> int:
        return self.people[name].user["id"]

    def user(self, name: str) -> dict[str, str]:
        return {"type": "user", "id": str(self.uid(name))}

    def space(self, code: str, service: str | None = None) -> dict[str, str]:
        middle = f"{service}/" if service else ""
        return {"type": "space", "id": f"{self.st}/{middle}{code}"}

    def structure(self) -> dict[str, str]:
        return {"type": "structure", "id": str(self.st)}


def make_world(api: Api, rt, structure_of) -> World:
    key = client_key(rt)
    people = {
        name: api.person(f"{name}@example.org", first=name.title())
        for name in ("ada", "bob", "carol", "dave")
    }
    ada = people["ada"]
    st = structure_of(ada, "ACME")["id"]
    created = ada.post(
        f"/v1/structures/{st}/services", json={"code": "compta", "label": "Comptabilité"}
    )
    assert created.status_code == 201, created.json
    service_id = created.json["id"]
    opened = ada.put(
        f"/v1/structures/{st}/spaces",
        json={
            "spaces": [
                {"space": "my_account"},
                {"space": "manager_activities"},
                {"space": "issued_invoices"},
                {"space": "works_invoices", "service_id": service_id},
            ]
        },
    )
    assert opened.status_code == 200, opened.json
    w = World(Api(api.client, rt, key), people, st, service_id)
    grant(
        rt,
        w.uid("bob"),
        st,
        subscriptions=(
            ("issued_invoices", "modify", None),
            ("works_invoices", "consult", service_id),
        ),
    )
    grant(
        rt,
        w.uid("carol"),
        st,
        service_id=service_id,
        subscriptions=(("works_invoices", "modify", service_id),),
    )
    return w


def ask(w: World, who: str, action: str, resource: dict, **extra) -> dict:
    """An AuthZEN request body: may `who` do `action` on `resource`?"""
    return {"subject": w.user(who), "action": {"name": action}, "resource": resource, **extra}


def native(w: World, who: str, action: str, space: str | None, service: str | None):
    """The same question asked of the native POST /v1/checks."""
    r = w.portal.post(
        "/v1/checks",
        json={
            "user_id": w.uid(who),
            "structure_id": w.st,
            "space": space,
            "service": service,
            "action": action,
        },
    )
    assert r.status_code == 200, r.json
    return r.json


def fill(value, w: World):
    """`value` with "{st}" and "{ada}" replaced by the world's ids."""
    if isinstance(value, dict):
        return {k: fill(v, w) for k, v in value.items()}
    if isinstance(value, str):
        return value.replace("{st}", str(w.st)).replace("{ada}", str(w.uid("ada")))
    return value
