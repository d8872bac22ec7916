"""The role × route matrix (issue 10, point 6): every operation of the OpenAPI
document, called by each of the ten callers of tests/support/callers.py with
the request tests/route_matrix.yaml gives it. The callers the matrix allows
get a 2xx; every other gets 401, 403 or 404, and another structure's principal
gets 404 on what belongs to ACME (never data, never even a 403 that says it
exists). A new operation the matrix does not list fails the first test."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import Api
from tests.support.callers import CALLERS, build_world, resolve, route_matrix

MATRIX = route_matrix()
REFUSED = {401, 403, 404}


def allowed(row: dict[str, Any]) -> tuple[str, ...]:
    allow = row["allow"]
    return CALLERS if allow == "everyone" else tuple(allow)


def worlds(label: str) -> list[tuple[str, ...]]:
    """The callers of each world an operation is called on: one world for
    every caller of an operation that reads; for one that changes something,
    one for the refused callers together and one per allowed caller."""
    row = MATRIX[label]
    if label.startswith("GET "):
        return [CALLERS]
    refused = tuple(c for c in CALLERS if c not in allowed(row))
    return ([refused] if refused else []) + [(caller,) for caller in allowed(row)]


def test_every_operation_of_the_document_is_in_the_matrix(api):
    spec = api.get("/openapi.json").json
    documented = {
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert documented - set(MATRIX) == set(), "operations missing from tests/route_matrix.yaml"
    assert set(MATRIX) - documented == set(), "tests/route_matrix.yaml lists unknown operations"
    for label, row in MATRIX.items():
        assert set(allowed(row)) <= set(CALLERS), label


def expected(label: str, row: dict[str, Any], caller: str) -> str:
    if caller in allowed(row):
        return "2xx"
    if caller == "other_principal" and row.get("path"):
        return "404"
    return "401/403/404"


def outcome(status: int, caller: str, label: str, row: dict[str, Any]) -> bool:
    want = expected(label, row, caller)
    if want == "2xx":
        return 200 <= status < 300
    if want == "404":
        return status == 404
    return status in REFUSED


@pytest.mark.parametrize("label", list(MATRIX))
def test_only_the_callers_the_matrix_allows_get_a_2xx(api: Api, label: str):
    row = MATRIX[label]
    method, template = label.split(" ", 1)
    wrong = []
    for n, callers in enumerate(worlds(label)):
        world = build_world(api, n)
        path = template.format(**{k: world.ids[v] for k, v in row.get("path", {}).items()})
        body = resolve(row["body"], world.ids, world.names) if "body" in row else None
        query = resolve(row.get("query", {}), world.ids, world.names)
        for caller in callers:
            response = api.client.open(
                path, method=method, json=body, query_string=query, headers=world.headers(caller)
            )
            if not outcome(response.status_code, caller, label, row):
                wrong.append(
                    f"{caller}: {response.status_code} (expected {expected(label, row, caller)})"
                    f" {(response.get_json(silent=True) or {}).get('code', '')}"
                )
    assert not wrong, f"{label}:\n" + "\n".join(wrong)
