"""Property-based fuzzing over the OpenAPI document (issue 10, point 6): every
operation of the document, with requests schemathesis draws from it (valid
and invalid), sent to a live `authz serve` on this run's database by the
principal of a structure, a client application and an operator. No answer may
be a 5xx, and every answer must agree with the document: a status the
operation declares by name (not only through `default`), the declared content
type, a body that matches the declared schema.

The budget is fixed (FUZZ_EXAMPLES examples per operation, derandomized: the
same requests every run); docs/decisions.md, "Fuzzing", says how to run this
module alone, with a larger budget, and how to replay a failure."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api import create_app
from authz.config import load_settings
from authz.db import make_engine, upgrade
from authz.runtime import close_runtime
from tests.support.api import Api
from tests.support.backend import POSTGRES_URL, app_settings
from tests.support.callers import OPERATIONS, World, bearer_token, build_world
from tests.support.live import Server, postgres_schema, serve_env, serving

# Examples per operation (each sent once per caller): 73 operations × 3 callers
# × 12 ≈ 2,600 requests, about a minute on two cores. AUTHZ_TEST_FUZZ_EXAMPLES raises it.
FUZZ_EXAMPLES = int(os.environ.get("AUTHZ_TEST_FUZZ_EXAMPLES", "12"))
# The callers each example is sent as (the matrix test covers the others).
FUZZ_CALLERS = ("principal", "client_key", "operator")
# A path id below this is read as an index into the world's ids of that kind,
# so that requests reach real rows; larger (and out-of-range) ids stay as drawn.
SMALL_ID = 1000


@schemathesis.check
def status_code_declared(ctx: Any, response: schemathesis.Response, case: Any) -> bool | None:
    """Stricter than status_code_conformance, which `default` satisfies: the
    status is one the operation lists by number."""
    declared = set(case.operation.definition.raw.get("responses", {})) - {"default"}
    if str(response.status_code) not in declared:
        raise AssertionError(
            f"{response.status_code} is not declared by {case.operation.label} "
            f"(declared: {', '.join(sorted(declared))})"
        )
    return True


@schemathesis.check
def no_server_error(ctx: Any, response: schemathesis.Response, case: Any) -> bool | None:
    """not_a_server_error, less the one 5xx a caller asks for: a decision at
    a revision not committed yet (`at_least_revision` beyond the latest) is the
    declared 503 `revision_unavailable`, "retry later" (docs/decisions.md)."""
    if response.status_code == 503 and response.json().get("code") == "revision_unavailable":
        return status_code_declared(ctx, response, case)
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_server_error,
    status_code_conformance,
    status_code_declared,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class Fuzzed:
    server: Server
    world: World
    rt: Any
    session: requests.Session

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def headers(self, caller: str, case: Any) -> dict[str, str]:
        if case.operation.label == "DELETE /v1/auth/token" and caller != "client_key":
            # Logging out revokes the token: a token of its own each time.
            user = {"principal": "ada", "operator": "oscar"}[caller]
            return {"Authorization": f"Bearer {bearer_token(self.rt, self.world.ids[user])}"}
        return self.world.headers(caller)

    def known_ids(self, name: str) -> list[int]:
        ids = self.world.ids
        return {
            "structure_id": [ids["acme"], ids["bobs"]],
            "service_id": [ids["service"]],
            "user_id": [ids[u] for u in ("sue", "sam", "technical", "ada", "pat", "bob")],
            "request_id": [ids["attachment_request"], ids["subscription_request"]],
            "invitation_id": [ids["invitation"]],
            "entry_id": [ids["history_entry"]],
        }.get(name, [])

    def aim(self, case: Any) -> None:
        """Point small path ids at the world's rows."""
        for name, value in (case.path_parameters or {}).items():
            known = self.known_ids(name)
            if known and isinstance(value, int) and 0 <= value < SMALL_ID:
                case.path_parameters[name] = known[value % len(known)]


@pytest.fixture(scope="module")
def fuzz_database(migrated_template: str, tmp_path_factory) -> Iterator[str]:
    """A migrated database of the module's own on this run's backend."""
    if not POSTGRES_URL:
        target = tmp_path_factory.mktemp("fuzz-db") / "authz.db"
        target.write_bytes(Path(migrated_template).read_bytes())
        yield f"sqlite:///{target}"
        return
    with postgres_schema() as url:
        engine = make_engine(load_settings({"database_url": url}))
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="module")
def fuzzed(fuzz_database: str, tmp_path_factory) -> Iterator[Fuzzed]:
    """The callers' world, then `authz serve` (two workers) on it."""
    var = tmp_path_factory.mktemp("fuzz")
    app = create_app(app_settings(fuzz_database, var / "var"))
    app.config["TESTING"] = True
    rt = app.extensions["authz"]
    try:
        world = build_world(Api(app.test_client(), rt))
        env = serve_env(fuzz_database, var / "var")
        with serving(env, var / "serve.log") as server, requests.Session() as session:
            yield Fuzzed(server, world, rt, session)
    finally:
        close_runtime(rt)


@pytest.fixture(scope="module")
def fuzz_schema(fuzzed: Fuzzed) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed.base_url}/openapi.json")


def test_every_operation_of_the_document_is_fuzzed(fuzz_schema):
    documented = {op.ok().label for op in fuzz_schema.get_all_operations()}
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_request_gets_a_5xx_or_an_answer_the_document_does_not_declare(
    label, fuzzed, fuzz_schema
):
    operation = fuzz_schema.find_operation_by_label(label)
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if operation.path_parameters or operation.query or operation.body:
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=FUZZ_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        fuzzed.aim(case)
        for caller in FUZZ_CALLERS:
            case.call_and_validate(
                base_url=fuzzed.base_url,
                session=fuzzed.session,
                headers=fuzzed.headers(caller, case),
                checks=CHECKS,
                timeout=30,
            )

    fuzz()
