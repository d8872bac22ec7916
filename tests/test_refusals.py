"""Refusals of routes whose happy path is tested elsewhere: finding a
structure to join, asking for spaces, attaching a user directly."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.exc import OperationalError

from authz.errors import Unavailable
from models import Attachment, Structure
from tests.support.rows import grant


def set_inactive(rt, structure_id):
    with rt.sessions() as s:
        s.get(Structure, structure_id).status = "inactive"
        s.commit()


def test_lookup_finds_only_an_active_structure_by_its_exact_identifier(api, rt, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    st = structure_of(ada)
    find = lambda value: bob.get(
        "/v1/structures/lookup",
        query_string={  # noqa: E731
            "identifier_type": "SIRET",
            "identifier_value": value,
        },
    )
    assert find(st["identifier_value"]).status_code == 200
    assert find("35600000000048").status_code == 404  # valid, but nobody has it
    assert find(st["identifier_value"][:10]).status_code == 422  # no partial match
    assert (
        api.get(
            "/v1/structures/lookup",
            query_string={"identifier_type": "SIRET", "identifier_value": st["identifier_value"]},
        ).status_code
        == 401
    )
    set_inactive(rt, st["id"])
    assert find(st["identifier_value"]).status_code == 404


def test_only_an_attached_user_asks_for_spaces_and_only_where_attached(api, rt, structure_of):
    ada = api.person("ada@example.org")
    eve = api.person("eve@example.org")
    st = structure_of(ada)
    one = ada.post(f"/v1/structures/{st['id']}/services", json={"code": "S1", "label": "1"}).json
    two = ada.post(f"/v1/structures/{st['id']}/services", json={"code": "S2", "label": "2"}).json
    ada.put(f"/v1/structures/{st['id']}/spaces", json={"spaces": [{"space": "issued_invoices"}]})
    line = {"space": "issued_invoices", "service_id": None, "level": "consult"}
    stranger = eve.post(
        "/v1/subscription-requests", json={"structure_id": st["id"], "lines": [line]}
    )
    assert stranger.status_code == 404
    with rt.sessions() as s:  # Eve attached to service S1 only
        s.add(
            Attachment(
                user_id=eve.user["id"],
                structure_id=st["id"],
                service_id=one["id"],
                role="simple",
                status="validated",
                valid_from=dt.date.today(),
            )
        )
        s.commit()
    outside = eve.post(
        "/v1/subscription-requests",
        json={"structure_id": st["id"], "lines": [{**line, "service_id": two["id"]}]},
    )
    assert outside.status_code == 422 and outside.json["code"] == "outside_attachment"
    whole = eve.post("/v1/subscription-requests", json={"structure_id": st["id"], "lines": [line]})
    assert whole.status_code == 422 and whole.json["code"] == "outside_attachment"
    ok = eve.post(
        "/v1/subscription-requests",
        json={"structure_id": st["id"], "lines": [{**line, "service_id": one["id"]}]},
    )
    assert ok.status_code == 201


@pytest.mark.parametrize("role, status", [("simple", 403), ("technical", 403)])
def test_only_managers_attach_users_directly(api, rt, structure_of, role, status):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    carl = api.person("carl@example.org")
    st = structure_of(ada)
    grant(rt, bob.user["id"], st["id"], role=role)
    body = {"user_id": carl.user["id"], "whole_structure": True}
    assert bob.post(f"/v1/structures/{st['id']}/attachments", json=body).status_code == status
    assert carl.post(f"/v1/structures/{st['id']}/attachments", json=body).status_code == 404


def test_direct_attachment_refuses_bad_input(api, rt, structure_of):
    ada = api.person("ada@example.org")
    carl = api.person("carl@example.org")
    st = structure_of(ada)
    url = f"/v1/structures/{st['id']}/attachments"
    today = dt.date.today()
    cases = [
        ({"user_id": 999, "whole_structure": True}, 404),
        ({"login_email": "nobody@example.org", "whole_structure": True}, 404),
        ({"whole_structure": True}, 422),
        (
            {
                "user_id": carl.user["id"],
                "login_email": "carl@example.org",
                "whole_structure": True,
            },
            422,
        ),
        ({"user_id": carl.user["id"], "whole_structure": True, "role": "principal"}, 422),
        ({"user_id": carl.user["id"], "whole_structure": False, "service_ids": []}, 422),
        ({"user_id": carl.user["id"], "whole_structure": False, "service_ids": [999]}, 422),
        (
            {
                "user_id": carl.user["id"],
                "whole_structure": True,
                "valid_from": today.isoformat(),
                "valid_until": (today - dt.timedelta(days=1)).isoformat(),
            },
            422,
        ),
    ]
    for body, status in cases:
        r = ada.post(url, json=body)
        assert r.status_code == status, (body, r.json)
        assert r.content_type == "application/problem+json"
    assert ada.get(f"/v1/users/{carl.user['id']}/permissions").status_code == 404


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
