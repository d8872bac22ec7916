"""No existence leaks (issue 10, point 5): for every route with an id in its
path - taken from the OpenAPI document, so a new route must be added here -
the problem answered for another structure's id is the same (status, code,
title, detail, errors) as for an id that does not exist; the same for the bulk
routes, item by item. The caller is Ada, principal of her own structure; the
ids belong to Bob's."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.support.api import Api
from tests.support.consent import attach
from tests.support.rows import subscribe

MISSING = 987_654

# (method, OpenAPI path) → the body that passes the route's schema, so that the
# id is what decides the answer. "{user}" in a body: a real user of Bob's.
BODIES: dict[tuple[str, str], dict | None] = {
    ("get", "/v1/structures/{structure_id}"): None,
    ("patch", "/v1/structures/{structure_id}"): {"designation": "Renamed"},
    ("get", "/v1/structures/{structure_id}/services"): None,
    ("post", "/v1/structures/{structure_id}/services"): {"code": "NEW", "label": "New"},
    ("patch", "/v1/structures/{structure_id}/services/{service_id}"): {"label": "Renamed"},
    ("get", "/v1/structures/{structure_id}/spaces"): None,
    ("put", "/v1/structures/{structure_id}/spaces"): {"spaces": []},
    ("get", "/v1/structures/{structure_id}/access"): None,
    ("post", "/v1/structures/{structure_id}/attachments"): {
        "user_id": "{user}",
        "whole_structure": True,
    },
    ("get", "/v1/structures/{structure_id}/candidates"): None,
    ("delete", "/v1/structures/{structure_id}/attachments/{user_id}"): None,
    ("get", "/v1/structures/{structure_id}/users"): None,
    ("put", "/v1/structures/{structure_id}/users/{user_id}/role"): {"role": "secondary"},
    ("post", "/v1/structures/{structure_id}/users/{user_id}/services"): {"service_ids": [1]},
    ("delete", "/v1/structures/{structure_id}/users/{user_id}/services/{service_id}"): None,
    ("get", "/v1/structures/{structure_id}/users/{user_id}/subscriptions"): None,
    (
        "delete",
        "/v1/structures/{structure_id}/users/{user_id}/subscriptions/{subscription_id}",
    ): None,
    ("get", "/v1/structures/{structure_id}/history"): None,
    ("post", "/v1/structures/{structure_id}/principal"): {"user_id": "{user}"},
    ("post", "/v1/structures/{structure_id}/identifier-change"): {
        "identifier_type": "SIRET",
        "identifier_value": "55208131766522",
        "confirm": True,
    },
    ("get", "/v1/structures/{structure_id}/technical-users"): None,
    ("post", "/v1/structures/{structure_id}/technical-users"): {"label": "ERP"},
    ("post", "/v1/structures/{structure_id}/technical-users/{user_id}/secret"): {"confirm": True},
    ("get", "/v1/structures/{structure_id}/invitations"): None,
    ("delete", "/v1/structures/{structure_id}/invitations/{invitation_id}"): None,
    ("get", "/v1/users/{user_id}"): None,
    ("patch", "/v1/users/{user_id}"): {"last_name": "Changed"},
    ("get", "/v1/users/{user_id}/structures"): None,
    ("get", "/v1/users/{user_id}/permissions"): None,
    ("get", "/v1/history/{entry_id}"): None,
    ("get", "/v1/attachment-requests/{request_id}"): None,
    ("post", "/v1/attachment-requests/{request_id}/validation"): {},
    ("post", "/v1/attachment-requests/{request_id}/refusal"): {"reason": "No"},
    ("get", "/v1/subscription-requests/{request_id}"): None,
    ("post", "/v1/subscription-requests/{request_id}/validation"): {},
    ("post", "/v1/subscription-requests/{request_id}/refusal"): {"reason": "No"},
    ("post", "/v1/me/invitations/{invitation_id}/acceptance"): None,
    ("post", "/v1/me/invitations/{invitation_id}/refusal"): None,
    ("delete", "/v1/me/structures/{structure_id}"): None,
}

# Bulk routes: (path, body with "{ids}").
BULK = [
    ("/v1/attachment-requests/validations", {"ids": "{ids}"}, "attachment"),
    ("/v1/attachment-requests/refusals", {"ids": "{ids}", "reason": "No"}, "attachment"),
    ("/v1/subscription-requests/validations", {"ids": "{ids}"}, "subscription"),
    ("/v1/subscription-requests/refusals", {"ids": "{ids}", "reason": "No"}, "subscription"),
    ("/v1/users/activation-emails", {"ids": "{ids}"}, "user"),
]


@dataclass
class World:
    ada: Api
    own: dict[str, int]  # Ada's ids, for the other parameters of a path
    theirs: dict[str, int]  # Bob's ids, per parameter (and per request kind)


@pytest.fixture
def world(api, rt, structure_of) -> World:
    ada = api.person("ada@example.org", "Ada", "Own")
    bob = api.person("bob@example.org", "Bob", "Other")
    beth = api.person("beth@example.org", "Beth", "Member")
    eve = api.person("eve@example.org", "Eve", "Service")
    mine = structure_of(ada, "Ada's")["id"]
    theirs = structure_of(bob, "Bob's")["id"]
    svc = bob.post(f"/v1/structures/{theirs}/services", json={"code": "S", "label": "S"}).json
    own_svc = ada.post(f"/v1/structures/{mine}/services", json={"code": "S", "label": "S"}).json
    attach(bob, theirs, {"user_id": beth.user["id"], "whole_structure": True})
    tech = bob.post(f"/v1/structures/{theirs}/technical-users", json={"label": "ERP"}).json
    # Requests on Bob's structure: Carl asks to be attached; Beth asks for a space.
    carl = api.person("carl@example.org", "Carl", "Asker")
    att = carl.post("/v1/attachment-requests", json={"structure_id": theirs}).json
    sub = beth.post(
        "/v1/subscription-requests",
        json={
            "structure_id": theirs,
            "lines": [{"space": "issued_invoices", "level": "consult"}],
        },
    )
    assert sub.status_code == 201, sub.json
    dana = api.person("dana@example.org", "Dana", "Invited")
    invited = bob.post(
        f"/v1/structures/{theirs}/attachments",
        json={"user_id": dana.user["id"], "whole_structure": True},
    )
    assert invited.status_code == 202, invited.json
    entry = bob.get(f"/v1/structures/{theirs}/history").json["items"][0]["id"]
    beths = subscribe(rt, beth.user["id"], theirs, "issued_solicitations", "consult", granted_by=1)
    attach(
        bob,
        theirs,
        {"user_id": eve.user["id"], "whole_structure": False, "service_ids": [svc["id"]]},
    )
    return World(
        ada=ada,
        own={"structure_id": mine, "service_id": own_svc["id"]},
        theirs={
            "structure_id": theirs,
            "service_id": svc["id"],
            "user_id": beth.user["id"],
            "technical_user_id": tech["user_id"],
            "entry_id": entry,
            "attachment": att["id"],
            "subscription": sub.json["id"],
            "subscription_id": beths,
            "service_user_id": eve.user["id"],
            "invitation_id": invited.json["id"],
            "user": beth.user["id"],
        },
    )


def _problem(response) -> dict:
    assert response.content_type == "application/problem+json", response.get_data(as_text=True)
    body = dict(response.json)
    body.pop("instance", None)
    body.pop("request_id", None)
    return body


def _call(ada: Api, method: str, path: str, body: dict | None, user: int):
    if body is not None:
        body = {k: (user if v == "{user}" else v) for k, v in body.items()}
    return getattr(ada, method)(path, json=body)


def _fill(path: str, values: dict[str, int]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", str(value))
    return path


def _foreign(world: World, path: str) -> dict[str, int]:
    """Bob's id for each parameter of `path`."""
    ids = dict(world.theirs)
    if "/technical-users/" in path:
        ids["user_id"] = world.theirs["technical_user_id"]
    if "/users/{user_id}/services/" in path:
        ids["user_id"] = world.theirs["service_user_id"]
    if path.startswith("/v1/attachment-requests/"):
        ids["request_id"] = world.theirs["attachment"]
    if path.startswith("/v1/subscription-requests/"):
        ids["request_id"] = world.theirs["subscription"]
    return ids


def test_every_route_with_an_id_is_covered(app):
    spec = app.test_client().get("/openapi.json").json
    routes = {
        (method, path)
        for path, operations in spec["paths"].items()
        if "{" in path
        for method in operations
        if method != "parameters"
    }
    assert routes == set(BODIES), routes ^ set(BODIES)


@pytest.mark.parametrize("method, path", sorted(BODIES))
def test_another_structures_id_answers_as_a_missing_one(world, method, path):
    body = BODIES[(method, path)]
    params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
    foreign = _foreign(world, path)
    cases = [({p: foreign[p] for p in params}, dict.fromkeys(params, MISSING))]
    if len(params) > 1:  # Ada's own structure, then Bob's thing in it
        first, rest = params[0], params[1:]
        own = {first: world.own[first]}
        cases.append(
            ({**own, **{p: foreign[p] for p in rest}}, {**own, **dict.fromkeys(rest, MISSING)})
        )
    user = world.theirs["user"]
    for theirs, missing in cases:
        a = _call(world.ada, method, _fill(path, theirs), body, user)
        b = _call(world.ada, method, _fill(path, missing), body, user)
        assert a.status_code == b.status_code == 404, (path, theirs, a.json, b.json)
        assert _problem(a) == _problem(b), (method, path, theirs)


@pytest.mark.parametrize("path, body, kind", BULK)
def test_bulk_outcomes_do_not_tell_another_structures_ids_from_missing_ones(
    world, path, body, kind
):
    theirs = {"attachment": "attachment", "subscription": "subscription", "user": "user_id"}
    ids = [world.theirs[theirs[kind]], MISSING]
    r = world.ada.post(path, json={**body, "ids": ids})
    assert r.status_code == 200, r.json
    foreign, missing = r.json["results"]
    assert not foreign["ok"] and not missing["ok"]
    assert (foreign["code"], foreign["detail"]) == (missing["code"], missing["detail"])


def test_the_export_refuses_another_structures_user_as_a_missing_one(world):
    a = world.ada.post("/v1/users/export", json={"ids": [world.theirs["user"]]})
    b = world.ada.post("/v1/users/export", json={"ids": [MISSING]})
    assert a.status_code == b.status_code == 404
    assert _problem(a) == _problem(b)
