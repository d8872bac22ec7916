"""What a user may do, and who may do what on a structure."""

from __future__ import annotations

from tests.support.rows import grant, key_headers


def test_a_user_sees_their_own_permissions(api, rt, structure_of):
    ada = api.person("ada@example.org")
    st = structure_of(ada)
    r = ada.get(f"/v1/users/{ada.user['id']}/permissions")
    assert r.status_code == 200, r.json
    [item] = r.json["items"]
    assert item["structure_id"] == st["id"] and item["role"] == "principal"
    assert "attachment_requests.process" in item["management"]
    spaces = {(g["service"], g["space"]): g["actions"] for g in item["grants"]}
    assert spaces[(None, "manager_activities")] == ["consult", "modify", "create"]
    assert (None, "issued_invoices") not in spaces  # opened, but no subscription
    assert r.json["revision"] >= 1


def test_a_subscription_appears_in_permissions_at_the_returned_revision(api, rt, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    st = structure_of(ada)
    revision = grant(
        rt, bob.user["id"], st["id"], subscriptions=[("issued_invoices", "consult", None)]
    )
    r = bob.get(
        f"/v1/users/{bob.user['id']}/permissions", query_string={"at_least_revision": revision}
    )
    [item] = r.json["items"]
    assert item["role"] == "simple" and item["management"] == ["structure.view"]
    assert {"service": None, "space": "issued_invoices", "actions": ["consult"]} in item["grants"]


def test_a_stranger_cannot_see_someone_elses_permissions(api, structure_of):
    ada = api.person("ada@example.org")
    eve = api.person("eve@example.org")
    structure_of(ada)
    assert eve.get(f"/v1/users/{ada.user['id']}/permissions").status_code == 404


def test_a_simple_member_cannot_read_the_permissions_of_others(api, rt, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    st = structure_of(ada)
    grant(rt, bob.user["id"], st["id"])
    assert bob.get(f"/v1/users/{ada.user['id']}/permissions").status_code == 404
    assert ada.get(f"/v1/users/{bob.user['id']}/permissions").status_code == 200


def test_structure_access_lists_who_may_do_what(api, rt, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    st = structure_of(ada)
    grant(rt, bob.user["id"], st["id"], subscriptions=[("issued_invoices", "modify", None)])
    r = ada.get(f"/v1/structures/{st['id']}/access")
    assert r.status_code == 200 and r.json["total"] == 2
    by_user = {i["user_id"]: i for i in r.json["items"]}
    assert by_user[ada.user["id"]]["role"] == "principal"
    bob_grants = by_user[bob.user["id"]]["grants"]
    assert {
        "service": None,
        "space": "issued_invoices",
        "actions": ["consult", "modify", "create"],
    } in bob_grants
    page = ada.get(f"/v1/structures/{st['id']}/access", query_string={"page_size": 1})
    assert page.json["total"] == 2 and len(page.json["items"]) == 1


def test_structure_access_is_for_managers_and_clients_only(api, rt, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    eve = api.person("eve@example.org")
    st = structure_of(ada)
    grant(rt, bob.user["id"], st["id"])
    assert bob.get(f"/v1/structures/{st['id']}/access").status_code == 404
    assert eve.get(f"/v1/structures/{st['id']}/access").status_code == 404
    headers = key_headers(rt)
    assert api.get(f"/v1/structures/{st['id']}/access", headers=headers).status_code == 200
    assert api.get(f"/v1/users/{bob.user['id']}/permissions", headers=headers).status_code == 200


def test_unknown_user_and_structure_are_not_found(api, rt):
    headers = key_headers(rt)
    assert api.get("/v1/users/999/permissions", headers=headers).status_code == 404
    assert api.get("/v1/structures/999/access", headers=headers).status_code == 404


def test_future_revision_fails_closed(api, rt, structure_of):
    ada = api.person("ada@example.org")
    r = ada.get(
        f"/v1/users/{ada.user['id']}/permissions", query_string={"at_least_revision": 10_000}
    )
    assert r.status_code == 503 and r.json["code"] == "revision_unavailable"
