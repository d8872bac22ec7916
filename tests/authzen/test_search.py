"""The AuthZEN Search APIs (POST /access/v1/search/subject, …/resource,
…/action; docs/authzen.md): the results the native checks allow, paged with
tokens, as in the AuthZEN 1.0 certification scenario (Search).
"""

from __future__ import annotations

import dataclasses

import pytest

from api.authzen import wire
from tests.support.api import Api
from tests.support.authzen import (
    ACTIONS,
    RESOURCES,
    SUBJECTS,
    World,
    fill,
    native,
)
from tests.support.rows import grant


def search(w: World, path: str, body: dict, client: Api | None = None) -> list[dict]:
    """Every result of a search, following next_token; checks each page's shape."""
    results, token = [], None
    for _ in range(100):
        page = dict(body.get("page") or {})
        if token:
            page["token"] = token
        r = (client or w.portal).post(path, json={**body, "page": page})
        assert r.status_code == 200, r.json
        assert isinstance(r.json["context"]["revision"], int)
        assert r.json["page"]["count"] == len(r.json["results"])
        results += r.json["results"]
        token = r.json["page"]["next_token"]
        if token == "":
            return results
    raise AssertionError("pagination did not end")


def test_subject_search_lists_the_users_the_native_checks_allow(world):
    w = world
    for action, resource, space, service in (
        ("consult", w.space("issued_invoices"), "issued_invoices", None),
        ("consult", w.space("works_invoices", "compta"), "works_invoices", "compta"),
        ("modify", w.space("works_invoices", "compta"), "works_invoices", "compta"),
        ("consult", w.space("my_account"), "my_account", None),
        ("attachments.create", w.structure(), None, None),
    ):
        found = search(
            w,
            SUBJECTS,
            {"subject": {"type": "user"}, "action": {"name": action}, "resource": resource},
        )
        expected = [
            {"type": "user", "id": str(w.uid(who))}
            for who in sorted(w.people, key=w.uid)
            if native(w, who, action, space, service)["allowed"]
        ]
        assert found == expected, action
    assert search(
        w,
        SUBJECTS,
        {
            "subject": {"type": "user"},
            "action": {"name": "modify"},
            "resource": w.space("works_invoices", "compta"),
        },
    ) == [w.user("carol")]


def test_resource_search_lists_the_spaces_the_native_checks_allow(world):
    w = world
    for who in ("ada", "bob", "carol", "dave"):
        for action in ("consult", "modify", "create"):
            found = search(
                w,
                RESOURCES,
                {"subject": w.user(who), "action": {"name": action}, "resource": {"type": "space"}},
            )
            for resource in found:
                parts = resource["id"].split("/")
                assert resource["type"] == "space" and int(parts[0]) == w.st
                service = parts[1] if len(parts) == 3 else None
                assert native(w, who, action, parts[-1], service)["allowed"] is True
            for space, service in (
                ("issued_invoices", None),
                ("works_invoices", "compta"),
                ("my_account", None),
                ("issued_invoices", "compta"),
            ):
                allowed = native(w, who, action, space, service)["allowed"]
                assert (w.space(space, service) in found) is allowed, (who, action, space)
    carol = [w.space("my_account", "compta"), w.space("works_invoices", "compta")]
    assert (
        search(
            w,
            RESOURCES,
            {
                "subject": w.user("carol"),
                "action": {"name": "modify"},
                "resource": {"type": "space"},
            },
        )
        == carol
    )


def test_resource_search_lists_structures_for_a_management_action(world):
    w = world
    body = {"action": {"name": "history.read"}, "resource": {"type": "structure"}}
    assert search(w, RESOURCES, {"subject": w.user("ada"), **body}) == [w.structure()]
    assert search(w, RESOURCES, {"subject": w.user("bob"), **body}) == []
    assert (
        search(
            w,
            RESOURCES,
            {
                "subject": w.user("bob"),
                "action": {"name": "consult"},
                "resource": {"type": "structure"},
            },
        )
        == []
    )


def test_action_search_lists_the_actions_the_native_checks_allow(world, rt):
    w = world
    for who in ("ada", "bob", "carol"):
        on_space = search(
            w, ACTIONS, {"subject": w.user(who), "resource": w.space("works_invoices", "compta")}
        )
        assert on_space == [
            {"name": a}
            for a in ("consult", "modify", "create")
            if native(w, who, a, "works_invoices", "compta")["allowed"]
        ]
        on_structure = search(w, ACTIONS, {"subject": w.user(who), "resource": w.structure()})
        assert on_structure == [
            {"name": a} for a in rt.policies.actions if native(w, who, a, None, None)["allowed"]
        ]
    assert search(w, ACTIONS, {"subject": w.user("bob"), "resource": w.structure()}) == [
        {"name": "structure.view"}
    ]


def test_search_pages_with_next_token_return_every_result_once(world, rt):
    w = world
    body = {"subject": w.user("ada"), "resource": w.structure(), "page": {"limit": 4}}
    first = w.portal.post(ACTIONS, json=body).json
    assert first["page"]["count"] == 4 and first["page"]["next_token"]
    everything = search(w, ACTIONS, body)
    assert everything == [{"name": a} for a in rt.policies.actions]  # the principal: all 15
    assert len(everything) == 15
    one_by_one = search(
        w,
        RESOURCES,
        {
            "subject": w.user("ada"),
            "action": {"name": "consult"},
            "resource": {"type": "space"},
            "page": {"limit": 1},
        },
    )
    assert one_by_one == search(
        w,
        RESOURCES,
        {"subject": w.user("ada"), "action": {"name": "consult"}, "resource": {"type": "space"}},
    )
    assert len(one_by_one) > 3 and len({r["id"] for r in one_by_one}) == len(one_by_one)


def test_the_last_page_has_an_empty_next_token(world):
    w = world
    r = w.portal.post(
        ACTIONS, json={"subject": w.user("bob"), "resource": w.structure(), "page": {"limit": 1}}
    )
    assert r.json["results"] == [{"name": "structure.view"}]
    assert r.json["page"]["next_token"] == ""


def test_page_limit_defaults_and_is_capped(world, rt):
    w = world
    rt.settings = dataclasses.replace(rt.settings, page_size=5, page_size_max=7)
    body = {"subject": w.user("ada"), "resource": w.structure()}
    assert w.portal.post(ACTIONS, json=body).json["page"]["count"] == 5
    capped = w.portal.post(ACTIONS, json={**body, "page": {"limit": 10_000}}).json
    assert capped["page"]["count"] == 7 and capped["page"]["next_token"]
    assert len(search(w, ACTIONS, {**body, "page": {"limit": 10_000}})) == 15


def test_a_zero_limit_returns_no_result_but_says_whether_there_are_some(world):
    w = world
    body = {"subject": w.user("ada"), "resource": w.structure(), "page": {"limit": 0}}
    r = w.portal.post(ACTIONS, json=body).json
    assert r["results"] == [] and r["page"]["next_token"]
    nothing = w.portal.post(ACTIONS, json={**body, "subject": w.user("dave")}).json
    assert nothing["results"] == [] and nothing["page"]["next_token"] == ""


def test_a_page_token_resumes_after_the_policy_revision_moved(world, rt):
    w = world
    body = {
        "subject": {"type": "user"},
        "action": {"name": "consult"},
        "resource": w.space("my_account"),
        "page": {"limit": 1},
    }
    first = w.portal.post(SUBJECTS, json=body).json
    assert first["results"] == [w.user("ada")] and first["page"]["next_token"]
    grant(rt, w.uid("dave"), w.st)  # my_account comes with the simple role
    rest = search(w, SUBJECTS, {**body, "page": {"limit": 1, "token": first["page"]["next_token"]}})
    assert rest == [w.user("bob"), w.user("dave")]


def test_a_page_token_is_refused_with_another_request_or_when_forged(world):
    w = world
    body = {"subject": w.user("ada"), "resource": w.structure(), "page": {"limit": 2}}
    token = w.portal.post(ACTIONS, json=body).json["page"]["next_token"]
    changed = w.portal.post(ACTIONS, json={**body, "page": {"limit": 3, "token": token}})
    assert changed.status_code == 400 and changed.json["code"] == "page_token_mismatch"
    other = w.portal.post(
        ACTIONS, json={**body, "subject": w.user("bob"), "page": {"limit": 2, "token": token}}
    )
    assert other.status_code == 400 and other.json["code"] == "page_token_mismatch"
    same = {**body, "page": {"limit": 2, "token": "x"}}
    forged_key = wire.encode_token(["consult"], wire.fingerprint(same))
    for bad in ("garbage!!", "e30", forged_key):
        r = w.portal.post(ACTIONS, json={**body, "page": {"limit": 2, "token": bad}})
        assert r.status_code == 400 and r.json["code"] == "invalid_page_token", bad


@pytest.mark.parametrize(
    "page", [{"limit": -1}, {"limit": "2"}, {"limit": 1.5}, {"token": 5}, "next"]
)
def test_a_malformed_page_is_a_400(world, page):
    w = world
    r = w.portal.post(
        ACTIONS, json={"subject": w.user("ada"), "resource": w.structure(), "page": page}
    )
    assert r.status_code == 400


def test_page_properties_and_unknown_page_members_are_ignored(world):
    w = world
    r = w.portal.post(
        ACTIONS,
        json={
            "subject": w.user("bob"),
            "resource": w.structure(),
            "page": {"properties": {"sort": "name"}, "cursor": 1},
        },
    )
    assert r.status_code == 200 and r.json["results"] == [{"name": "structure.view"}]


@pytest.mark.parametrize(
    "path, body",
    [
        (
            SUBJECTS,
            {
                "subject": {"type": "spaceship"},
                "action": {"name": "consult"},
                "resource": {"type": "space", "id": "{st}/my_account"},
            },
        ),
        (
            SUBJECTS,
            {
                "subject": {"type": "user"},
                "action": {"name": "read"},
                "resource": {"type": "space", "id": "{st}/my_account"},
            },
        ),
        (
            SUBJECTS,
            {
                "subject": {"type": "user"},
                "action": {"name": "consult"},
                "resource": {"type": "record", "id": "record-1"},
            },
        ),
        (
            SUBJECTS,
            {
                "subject": {"type": "user"},
                "action": {"name": "consult"},
                "resource": {"type": "space", "id": "424242/my_account"},
            },
        ),
        (
            RESOURCES,
            {
                "subject": {"type": "spaceship", "id": "x"},
                "action": {"name": "consult"},
                "resource": {"type": "space"},
            },
        ),
        (
            RESOURCES,
            {
                "subject": {"type": "user", "id": "nonexistent-user"},
                "action": {"name": "consult"},
                "resource": {"type": "space"},
            },
        ),
        (
            RESOURCES,
            {
                "subject": {"type": "user", "id": "{ada}"},
                "action": {"name": "consult"},
                "resource": {"type": "record"},
            },
        ),
        (
            RESOURCES,
            {
                "subject": {"type": "user", "id": "{ada}"},
                "action": {"name": "read"},
                "resource": {"type": "space"},
            },
        ),
        (
            ACTIONS,
            {
                "subject": {"type": "user", "id": "nonexistent-user"},
                "resource": {"type": "space", "id": "{st}/my_account"},
            },
        ),
        (
            ACTIONS,
            {
                "subject": {"type": "user", "id": "99999999"},
                "resource": {"type": "space", "id": "{st}/my_account"},
            },
        ),
        (
            ACTIONS,
            {
                "subject": {"type": "user", "id": "{ada}"},
                "resource": {"type": "record", "id": "record-1"},
            },
        ),
        (
            ACTIONS,
            {
                "subject": {"type": "user", "id": "{ada}"},
                "resource": {"type": "space", "id": "{st}/no_such_space"},
            },
        ),
    ],
)
def test_unknown_types_and_ids_give_empty_results(world, path, body):
    w = world
    r = w.portal.post(path, json=fill(body, w))
    assert r.status_code == 200, r.json
    assert r.json["results"] == [] and r.json["page"]["next_token"] == ""


@pytest.mark.parametrize(
    "path, body",
    [
        (SUBJECTS, {"subject": {"type": "user"}, "resource": {"type": "space", "id": "1/x"}}),
        (
            SUBJECTS,
            {
                "subject": {"type": "user"},
                "action": {"name": "consult"},
                "resource": {"type": "space"},
            },
        ),
        (
            SUBJECTS,
            {
                "subject": {},
                "action": {"name": "consult"},
                "resource": {"type": "space", "id": "1/x"},
            },
        ),
        (RESOURCES, {"action": {"name": "consult"}, "resource": {"type": "space"}}),
        (
            RESOURCES,
            {
                "subject": {"type": "user"},
                "action": {"name": "consult"},
                "resource": {"type": "space"},
            },
        ),
        (
            RESOURCES,
            {
                "subject": {"type": "user", "id": "1"},
                "action": {"name": "consult"},
                "resource": {"id": "1/x"},
            },
        ),
        (ACTIONS, {"subject": {"type": "user", "id": "1"}}),
        (ACTIONS, {"resource": {"type": "structure", "id": "1"}}),
        (
            ACTIONS,
            {"subject": {"type": "user", "id": 1}, "resource": {"type": "structure", "id": "1"}},
        ),
    ],
)
def test_a_search_missing_a_required_field_is_a_400(world, path, body):
    r = world.portal.post(path, json=body)
    assert r.status_code == 400 and r.content_type == "application/problem+json"


def test_the_id_of_the_searched_entity_is_ignored(world):
    w = world
    with_id = search(
        w,
        SUBJECTS,
        {
            "subject": {"type": "user", "id": "anyone"},
            "action": {"name": "modify"},
            "resource": w.space("issued_invoices"),
        },
    )
    assert with_id == [w.user("bob")]
    resources = search(
        w,
        RESOURCES,
        {
            "subject": w.user("carol"),
            "action": {"name": "modify"},
            "resource": {"type": "space", "id": "1/whatever"},
        },
    )
    assert resources == [w.space("my_account", "compta"), w.space("works_invoices", "compta")]
    ignored_action = search(
        w,
        ACTIONS,
        {"subject": w.user("bob"), "resource": w.structure(), "action": {"name": "ignored"}},
    )
    assert ignored_action == [{"name": "structure.view"}]


def test_searches_accept_a_context(world):
    w = world
    assert search(
        w,
        ACTIONS,
        {
            "subject": w.user("bob"),
            "resource": w.structure(),
            "context": {"time": "2024-10-26T01:22-07:00"},
        },
    ) == [{"name": "structure.view"}]
