"""Decisions fail closed: when the policy store cannot be read, a check is
refused (a 503 problem naming no internals), never answered from a stale index."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from authz.errors import Unavailable


def _unreachable():
    raise OperationalError("connect", {}, Exception("database unreachable"))


def test_decisions_fail_closed_when_the_policy_store_cannot_be_read(
    api, rt, structure_of, monkeypatch
):
    ada = api.person("ada@example.org")
    st = structure_of(ada)
    question = {
        "user_id": ada.user["id"],
        "structure_id": st["id"],
        "space": "manager_activities",
        "action": "modify",
    }
    assert ada.post("/v1/checks", json=question).json["allowed"] is True
    rt.decider.close()  # the next revision poll opens a new connection…
    monkeypatch.setattr(rt.decider.db_engine, "raw_connection", _unreachable)
    with pytest.raises(Unavailable) as refused:  # …which fails: deny, never a stale allow
        rt.decider.ensure_fresh()
    assert refused.value.code == "policy_store_unavailable"


def test_a_database_outage_is_a_503_problem_not_a_500(api, rt, structure_of, monkeypatch):
    ada = api.person("ada@example.org")
    st = structure_of(ada)
    rt.decider.close()
    monkeypatch.setattr(rt.decider.db_engine, "raw_connection", _unreachable)
    rt.decider.db_engine.dispose()  # no pooled connection left either
    r = ada.post(
        "/v1/checks",
        json={
            "user_id": ada.user["id"],
            "structure_id": st["id"],
            "space": "manager_activities",
            "action": "modify",
        },
    )
    assert r.status_code == 503 and r.content_type == "application/problem+json"
    assert r.json["code"] in ("database_unavailable", "policy_store_unavailable")
    assert "unreachable" not in r.get_data(as_text=True)
