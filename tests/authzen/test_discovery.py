"""AuthZEN discovery (GET /.well-known/authzen-configuration,
docs/authzen.md): the metadata document of the AuthZEN 1.0 certification
scenario (Discovery), and the routes in the OpenAPI document.
"""

from __future__ import annotations

import dataclasses

from tests.support.authzen import (
    POST_ROUTES,
)


def test_discovery_document_names_every_endpoint_under_the_public_base_url(api, rt):
    rt.settings = dataclasses.replace(rt.settings, public_base_url="https://pdp.example.com/")
    r = api.get("/.well-known/authzen-configuration")
    assert r.status_code == 200 and r.content_type == "application/json"
    assert r.json == {
        "policy_decision_point": "https://pdp.example.com",
        "access_evaluation_endpoint": "https://pdp.example.com/access/v1/evaluation",
        "access_evaluations_endpoint": "https://pdp.example.com/access/v1/evaluations",
        "search_subject_endpoint": "https://pdp.example.com/access/v1/search/subject",
        "search_resource_endpoint": "https://pdp.example.com/access/v1/search/resource",
        "search_action_endpoint": "https://pdp.example.com/access/v1/search/action",
    }
    assert "max-age" in r.headers["Cache-Control"]


def test_discovery_is_public_and_its_endpoints_are_served(api, world):
    doc = api.get("/.well-known/authzen-configuration", headers={"Authorization": "Bearer made-up"})
    assert doc.status_code == 200
    assert doc.json["policy_decision_point"] == "http://authz.test"
    for name, url in doc.json.items():
        if name.endswith("_endpoint"):
            path = url.removeprefix("http://authz.test")
            assert world.portal.post(path, json={}).status_code == 400  # served, and strict


def test_the_openapi_document_describes_the_authzen_routes(api):
    paths = api.get("/openapi.json").json["paths"]
    for path in [*POST_ROUTES]:
        assert "post" in paths[path]
    assert "get" in paths["/.well-known/authzen-configuration"]
