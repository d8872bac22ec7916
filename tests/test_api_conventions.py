"""Conventions every route shares: problems, request ids, limits, docs, health."""

from __future__ import annotations

import pytest

from authz.workflows import structures


def test_missing_and_invalid_fields_are_a_422_problem(api):
    r = api.post("/v1/accounts", json={"login_email": "not-an-email", "first_name": ""})
    assert r.status_code == 422
    assert r.content_type == "application/problem+json"
    body = r.json
    assert body["code"] == "validation_failed"
    assert set(body["errors"]) >= {"login_email", "first_name", "last_name"}


def test_unknown_fields_are_refused(api):
    r = api.post(
        "/v1/accounts",
        json={
            "login_email": "a@example.org",
            "first_name": "A",
            "last_name": "B",
            "status": "active",
        },
    )
    assert r.status_code == 422 and "status" in r.json["errors"]


def test_malformed_json_is_a_400_problem(api):
    r = api.client.post(
        "/v1/accounts", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code in (400, 422)
    assert r.content_type == "application/problem+json"


def test_oversized_body_is_a_413_problem(api, rt):
    big = "x" * (rt.settings.max_body_bytes + 10)
    r = api.post(
        "/v1/accounts", json={"login_email": "a@example.org", "first_name": big, "last_name": "B"}
    )
    assert r.status_code == 413
    assert r.content_type == "application/problem+json"
    assert r.json["code"] == "body_too_large"


def test_unknown_route_and_method_are_problems(api):
    r = api.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json["code"] == "not_found"
    r = api.client.put("/v1/accounts", json={})
    assert r.status_code == 405 and r.json["code"] == "method_not_allowed"


def test_request_id_is_echoed_or_generated(api):
    r = api.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    generated = api.get("/health/live")
    assert len(generated.headers["X-Request-ID"]) >= 32
    hostile = api.get("/health/live", headers={"X-Request-ID": "bad\tvalue<script>"})
    assert hostile.headers["X-Request-ID"] != "bad\tvalue<script>"


def test_problem_carries_the_request_id(api):
    r = api.get("/v1/me", headers={"X-Request-ID": "trace-42"})
    assert r.json["request_id"] == "trace-42"


def test_unexpected_errors_are_a_500_problem_without_traceback(app, api, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(structures, "list_visible", boom)
    ada = api.person("ada@example.org")
    r = ada.get("/v1/structures")
    assert r.status_code == 500
    assert r.content_type == "application/problem+json"
    assert "secret internal detail" not in r.get_data(as_text=True)
    assert "Traceback" not in r.get_data(as_text=True)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/me",
        "/v1/structures",
        "/v1/structures/1",
        "/v1/structures/1/services",
        "/v1/structures/1/spaces",
        "/v1/spaces",
    ],
)
def test_every_route_but_the_public_ones_requires_a_token(api, path):
    r = api.get(path)
    assert r.status_code == 401
    bad = api.get(path, headers={"Authorization": "Bearer made-up"})
    assert bad.status_code == 401 and bad.json["code"] == "invalid_token"


def test_health_probes(api):
    assert api.get("/health/live").json == {"status": "ok"}
    assert api.get("/health/ready").json == {"status": "ok"}


def test_openapi_document_and_local_docs_page(api):
    spec = api.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert "/v1/structures/{structure_id}" in spec["paths"]
    assert "bearer" in spec["components"]["securitySchemes"]
    page = api.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in html and "//cdn" not in html
    assert "<script>" not in html  # the start-up script is a file (CSP-friendly)
    asset = api.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.data) > 100_000
    # Swagger UI 4 cannot read OpenAPI 3.1 ("Unable to render this definition").
    version = api.get("/docs/assets/VERSION").get_data(as_text=True)
    assert version.startswith("swagger-ui-dist 5.")
    assert api.get("/docs/assets/authz-docs.js").status_code == 200


def test_space_catalogue_comes_from_the_policy_file(api):
    ada = api.person("ada@example.org")
    spaces = {s["code"]: s for s in ada.get("/v1/spaces").json}
    assert spaces["received_invoices"]["public_only"] is True
    assert spaces["manager_activities"]["granted_by_default"] == {
        "principal": "modify",
        "secondary": "modify",
    }


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/v1/accounts", {"login_email": "new@example.org"}),
        ("POST", "/v1/auth/token", {"login_email": "x@example.org", "password": "x"}),
        ("POST", "/v1/accounts/activation-email", {"login_email": "x@example.org"}),
    ],
)
def test_a_credential_that_does_not_resolve_is_refused_on_public_routes_too(
    api, method, path, body
):
    """A caller that believes it acts as someone learns it does not (RFC 6750's
    invalid_token), rather than being served as anonymous; without the header
    the route stays open."""
    call = getattr(api, method.lower())
    bad = call(path, json=body, headers={"Authorization": "Bearer made-up"})
    assert bad.status_code == 401 and bad.json["code"] == "invalid_token"
    anonymous = call(path, json=body)
    assert anonymous.status_code != 401 or anonymous.json["code"] != "invalid_token"


def test_the_documentation_probes_and_unknown_paths_ignore_a_bearer_header(api):
    headers = {"Authorization": "Bearer made-up"}
    assert api.get("/openapi.json", headers=headers).status_code == 200
    assert api.get("/health/live", headers=headers).status_code == 200
    assert api.get("/.well-known/authzen-configuration", headers=headers).status_code == 200
    assert api.get("/v1/no-such-thing", headers=headers).status_code == 404
