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
from tests.support.backend import BACKEND
from tests.support.callers import CALLERS, build_world, resolve, route_matrix

MATRIX = route_matrix()
REFUSED = {401, 403, 404}
# A bulk answer's refusal of an item: what a 403 is to a single call.
ITEM_REFUSED = {"action_not_allowed", "not_found"}


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


def verdict(response: Any, row: dict[str, Any], world: Any) -> str:
    """What the caller got: "granted" (a 2xx that did the thing or showed the
    row), "refused" (401, 403, 404; a bulk answer that refused every item as
    not found; a list without the row), or the status of anything else."""
    status = response.status_code
    if status in REFUSED:
        return "refused" if status != 404 else "not found"
    if not 200 <= status < 300:
        return str(status)
    body = response.get_json(silent=True)
    if isinstance(body, dict) and body.get("results") and "ok" in body["results"][0]:
        if all(r["ok"] for r in body["results"]):
            return "granted"
        if all(r["code"] == "not_found" for r in body["results"]):
            return "not found"
        if all(r["code"] in ITEM_REFUSED for r in body["results"]):
            return "refused"
        return "bulk " + ",".join(sorted({str(r["code"]) for r in body["results"]}))
    if "sees" in row:
        items = body.get("items", []) if isinstance(body, dict) else []
        return "granted" if world.ids[row["sees"]] in {i.get("id") for i in items} else "refused"
    return "granted"


def expected(row: dict[str, Any], caller: str) -> set[str]:
    if caller in allowed(row):
        return {"granted"}
    other = row.get("other", {})
    if caller in other or "everyone" in other:
        return {str(other.get(caller, other.get("everyone")))}
    if caller == "other_principal" and row.get("path"):
        return {"not found"}
    return {"refused", "not found"}


# Who may call what is decided above the database: the matrix runs once, on
# SQLite. PostgreSQL's own failure modes (its errors, its limits) are the fuzz
# run's, which goes through every operation on both (tests/test_fuzz.py); this
# keeps CI well under its 30 minutes (docs/decisions.md, "Fuzzing and the matrix").
@pytest.mark.skipif(BACKEND == "postgresql", reason="the matrix runs on SQLite (see above)")
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
            response.get_data()  # an export streams: read it to the end, then close
            response.close()
            got = verdict(response, row, world)
            if got not in expected(row, caller):
                code = (response.get_json(silent=True) or {}).get("code", "")
                wrong.append(
                    f"{caller}: {got} ({response.status_code} {code}), "
                    f"expected {' or '.join(sorted(expected(row, caller)))}"
                )
    assert not wrong, f"{label}:\n" + "\n".join(wrong)
