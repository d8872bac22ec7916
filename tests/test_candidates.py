"""Finding an account to attach across the portal (issue 15): exact login
email, or last and first name together; only id, names and login email;
managers who may attach, throttled per caller, logged."""

from __future__ import annotations

import logging

from authz.workflows import candidates
from tests.support.rows import add_attachment

SHOWN = {"id", "first_name", "last_name", "login_email"}


def _find(caller, sid, **query):
    return caller.get(f"/v1/structures/{sid}/candidates", query_string=query)


def test_a_manager_finds_anyone_by_exact_login_or_both_names(api, structure_of, caplog):
    ada = api.person("ada@example.org")
    sid = structure_of(ada)["id"]
    lucie = api.person("lucie.petit@example.org", first="Lucie", last="Pétit")
    api.person("lucien@example.org", first="Lucien", last="Petit")
    with caplog.at_level(logging.INFO, logger="authz.candidates"):
        r = _find(ada, sid, login_email="Lucie.Petit@example.org")
    assert r.status_code == 200, r.json
    assert r.json["candidates"] == [
        {
            "id": lucie.user["id"],
            "first_name": "Lucie",
            "last_name": "Pétit",
            "login_email": "lucie.petit@example.org",
        }
    ]
    assert any(
        rec.message == "candidate search" and rec.by == "login_email" and rec.found == 1
        for rec in caplog.records
    )
    # Both names, whole, case and accents ignored.
    r = _find(ada, sid, last_name="PETIT", first_name="lucie")
    assert [c["id"] for c in r.json["candidates"]] == [lucie.user["id"]]
    assert set(r.json["candidates"][0]) == SHOWN
    # Never a part: neither a piece of the email nor of a name.
    assert _find(ada, sid, login_email="lucie").json["candidates"] == []
    assert _find(ada, sid, last_name="Pet", first_name="Lucie").json["candidates"] == []


def test_one_name_alone_or_nothing_is_refused(api, structure_of):
    ada = api.person("ada@example.org")
    sid = structure_of(ada)["id"]
    for query in ({}, {"last_name": "Petit"}, {"first_name": "Lucie"}):
        r = _find(ada, sid, **query)
        assert (r.status_code, r.json["code"]) == (422, "criterion_required"), query


def test_only_the_structures_managers_may_search(api, rt, structure_of):
    ada = api.person("ada@example.org")
    sid = structure_of(ada)["id"]
    bob = api.person("bob@example.org")
    structure_of(bob, "Bob SARL")
    sue = api.person("sue@example.org")
    add_attachment(rt, sue.user["id"], sid)
    query = {"login_email": "ada@example.org"}
    assert _find(bob, sid, **query).status_code == 404
    r = _find(sue, sid, **query)
    assert (r.status_code, r.json["code"]) == (403, "action_not_allowed")
    assert _find(ada, 999999, **query).status_code == 404


def test_searches_are_throttled_per_caller(api, structure_of, monkeypatch):
    monkeypatch.setattr(candidates, "CANDIDATE_SEARCHES", 2)
    ada = api.person("ada@example.org")
    sid = structure_of(ada)["id"]
    bob = api.person("bob@example.org")
    bobs = structure_of(bob, "Bob SARL")["id"]
    for _ in range(2):
        assert _find(ada, sid, login_email="x@example.org").status_code == 200
    r = _find(ada, sid, login_email="x@example.org")
    assert r.status_code == 429, r.json
    assert int(r.headers["Retry-After"]) >= 1
    # Another caller has their own count.
    assert _find(bob, bobs, login_email="x@example.org").status_code == 200
