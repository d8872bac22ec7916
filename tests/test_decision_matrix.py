"""The decision matrix (policies/tests/decisions.yaml): every row, asked of the
engine in-process and through each HTTP API (POST /v1/checks, one row per call
and all rows in one /v1/checks/batch call; AuthZEN POST /access/v1/evaluation),
must get the answer it expects.

The matrix's world is loaded once for this module (authz/review/fixtures.py) into its
own database. A *leg* is one way of asking a row; adding a way of asking (e.g.
another API shape) is adding one function to LEGS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

from api import create_app
from authz.config import ROOT
from authz.engine.policy import SPACE_ACTIONS
from authz.review.fixtures import WorldIds, load_world, question, read_matrix
from authz.runtime import Runtime, close_runtime
from authz.workflows.clients import create_client
from tests.support.backend import app_settings, fresh_database

MATRIX = read_matrix(ROOT / "policies" / "tests" / "decisions.yaml")
ROLES = yaml.safe_load((ROOT / "policies" / "roles.yaml").read_text(encoding="utf-8"))
SPACE_CODES = {
    s["code"]
    for s in yaml.safe_load((ROOT / "policies" / "spaces.yaml").read_text(encoding="utf-8"))[
        "spaces"
    ]
}
# Who holds which role in the matrix's world, on the active and inactive structure
# of the role x management action table ("none": attached nowhere there).
ROLE_HOLDERS = {
    "principal": "alice",
    "secondary": "sophie",
    "simple": "sam",
    "technical": "tom",
    "none": "nora",
}
TABLE_STRUCTURES = {"active": "acme", "inactive": "oldco"}


def row_id(row: dict[str, Any]) -> str:
    """A readable test id: user@structure[/service]:[space:]action->expect."""
    scope = row["structure"] + (f"/{row['service']}" if row.get("service") else "")
    what = f"{row['space']}:{row['action']}" if row.get("space") else row["action"]
    return f"{row['user']}@{scope}:{what}->{row['expect']}"


def check_body(row: dict[str, Any], ids: WorldIds) -> dict[str, Any]:
    """The /v1/checks question for a row."""
    q = question(row, ids)
    return {
        "user_id": q.user_id,
        "structure_id": q.structure_id,
        "service": q.service,
        "space": q.space,
        "action": q.action,
    }


@dataclass(frozen=True)
class Stage:
    """The loaded world and the ways to reach the service."""

    rt: Runtime
    client: FlaskClient
    ids: WorldIds
    headers: dict[str, str]

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(path, json=body, headers=self.headers)
        answer = response.json
        assert response.status_code == 200, (path, body, answer)
        assert isinstance(answer, dict)
        return answer


@pytest.fixture(scope="module")
def stage(migrated_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    directory = tmp_path_factory.mktemp("decision-matrix")
    app = create_app(app_settings(fresh_database(migrated_template, directory), directory / "var"))
    rt: Runtime = app.extensions["authz"]
    with rt.sessions() as session:
        ids = load_world(session, MATRIX.world)
        session.commit()
        _, key = create_client(session, rt, "decision-matrix")
    yield Stage(
        rt=rt, client=app.test_client(), ids=ids, headers={"Authorization": f"Bearer {key}"}
    )
    close_runtime(rt)


# --- the legs: one way each of asking a row; True when allowed ----------------


def ask_engine(stage: Stage, row: dict[str, Any]) -> bool:
    """The decider in-process, brought to the latest revision first."""
    stage.rt.decider.ensure_fresh()
    return stage.rt.decider.decide(question(row, stage.ids)).allowed


def ask_checks(stage: Stage, row: dict[str, Any]) -> bool:
    """POST /v1/checks with a client application's API key."""
    return stage.post("/v1/checks", check_body(row, stage.ids))["allowed"]


def ask_authzen(stage: Stage, row: dict[str, Any]) -> bool:
    """POST /access/v1/evaluation (OpenID AuthZEN 1.0) with the same API key."""
    q = question(row, stage.ids)
    if q.space is None:
        resource = {"type": "structure", "id": str(q.structure_id)}
    else:
        path = [str(q.structure_id), *([q.service] if q.service else []), q.space]
        resource = {"type": "space", "id": "/".join(path)}
    return stage.post(
        "/access/v1/evaluation",
        {
            "subject": {"type": "user", "id": str(q.user_id)},
            "resource": resource,
            "action": {"name": q.action},
        },
    )["decision"]


LEGS: dict[str, Callable[[Stage, dict[str, Any]], bool]] = {
    "engine": ask_engine,
    "checks": ask_checks,
    "authzen": ask_authzen,
}


@pytest.mark.parametrize("leg", LEGS)
@pytest.mark.parametrize("row", MATRIX.rows, ids=row_id)
def test_decision_is_the_one_the_matrix_expects(
    stage: Stage, row: dict[str, Any], leg: str
) -> None:
    allowed = LEGS[leg](stage, row)
    assert ("allow" if allowed else "deny") == row["expect"], row["why"]


def test_batch_answers_every_row_as_the_matrix_expects_in_one_call(stage: Stage) -> None:
    answer = stage.post(
        "/v1/checks/batch", {"checks": [check_body(row, stage.ids) for row in MATRIX.rows]}
    )
    assert len(answer["decisions"]) == len(MATRIX.rows)
    wrong = [
        f"{row_id(row)}: {row['why']}"
        for row, decision in zip(MATRIX.rows, answer["decisions"], strict=True)
        if ("allow" if decision["allowed"] else "deny") != row["expect"]
    ]
    assert wrong == []
    assert {d["revision"] for d in answer["decisions"]} == {answer["revision"]}


# --- the matrix itself --------------------------------------------------------


def test_matrix_rows_are_unique_and_name_known_spaces_and_actions() -> None:
    keys = [
        (r["user"], r["structure"], r.get("service"), r.get("space"), r["action"])
        for r in MATRIX.rows
    ]
    assert len(keys) == len(set(keys))
    for row in MATRIX.rows:
        if row.get("space") is None:
            assert row["action"] in ROLES["actions"], row_id(row)
        else:
            assert row["space"] in SPACE_CODES and row["action"] in SPACE_ACTIONS, row_id(row)


def test_matrix_covers_every_role_and_management_action_on_both_structure_states() -> None:
    world = MATRIX.world
    held = {
        (a["user"], a["structure"]): a["role"]
        for a in world["attachments"]
        if a.get("status", "validated") == "validated"
        and a.get("service") is None
        and a.get("valid_from", 0) <= 0
        and a.get("valid_until") is None
    }
    asked = {
        (r["user"], r["structure"], r["action"]) for r in MATRIX.rows if r.get("space") is None
    }
    assert set(ROLE_HOLDERS) == {*ROLES["roles"], "none"}
    for state, structure in TABLE_STRUCTURES.items():
        assert world["structures"][structure]["status"] == state
        for role, user in ROLE_HOLDERS.items():
            assert world["users"][user]["status"] == "active"
            assert held.get((user, structure), "none") == role, (user, structure)
            missing = [a for a in ROLES["actions"] if (user, structure, a) not in asked]
            assert missing == [], (role, state)
