"""Writes that change rights answer with the policy revision they committed (a
`revision` field and the Authz-Revision header), and a check at that revision
sees the write (docs/clients.md, "Reading your own writes"). Across workers
and instances: tests/test_policy_versions.py and clients/python/tests."""

from __future__ import annotations

import pytest

from api.identity import db, runtime
from authz.workflows.records import bump_revision, commit
from tests.support.api import PASSWORD, activation_token
from tests.support.membership import check
from tests.support.rows import key_headers, revision


def revision_of(response) -> int:
    """The revision a write answered with; its body and header must agree."""
    assert response.headers["Authz-Revision"] == str(response.json["revision"]), response.json
    return response.json["revision"]


def pending_account_attached(manager, structure_id: int, role: str = "simple"):
    """An account `manager` created for the structure and attached at once
    (still pending): its id and the attachment's answer."""
    created = manager.post(
        "/v1/accounts",
        json={
            "structure_id": structure_id,
            "login_email": "noe@example.org",
            "first_name": "Noé",
            "last_name": "Neuf",
        },
    )
    assert created.status_code == 201, created.json
    noe = created.json["id"]
    attached = manager.post(
        f"/v1/structures/{structure_id}/attachments",
        json={"user_id": noe, "role": role, "whole_structure": True},
    )
    assert attached.status_code == 201, attached.json
    return noe, attached


def test_a_created_structure_answers_its_revision_and_a_check_at_it_sees_its_principal(
    api, rt, structure_of
):
    ada = api.person("ada@example.org")
    r = ada.post(
        "/v1/structures",
        json={"identifier_type": "AUTRE", "identifier_value": "ADA-1", "designation": "Ada"},
    )
    assert r.status_code == 201, r.json
    written = revision_of(r)
    assert written == revision(rt)
    decision = check(
        api,
        ada.user["id"],
        r.json["id"],
        None,
        "attachments.create",
        at=written,
        headers=key_headers(rt),
    )
    assert decision["allowed"] and decision["revision"] >= written


def test_activating_an_attached_account_answers_a_revision_at_which_it_grants(
    api, rt, structure_of
):
    """An account a manager created and attached grants nothing while pending;
    its activation changes rights, so it bumps the revision and answers it."""
    claire = api.person("claire@example.org")
    sid = structure_of(claire)["id"]
    noe, attached = pending_account_attached(claire, sid, role="secondary")
    key = key_headers(rt)
    at = revision_of(attached)
    assert not check(api, noe, sid, None, "attachments.create", at=at, headers=key)["allowed"]
    r = api.client.post(
        "/v1/accounts/activation",
        json={"token": activation_token(rt, "noe@example.org"), "password": PASSWORD},
    )
    assert r.status_code == 200, r.json
    written = revision_of(r)
    assert written > at
    assert check(api, noe, sid, None, "attachments.create", at=written, headers=key)["allowed"]


def test_removing_an_attachment_answers_its_revision_instead_of_no_content(api, rt, structure_of):
    claire = api.person("claire@example.org")
    sid = structure_of(claire)["id"]
    noe, attached = pending_account_attached(claire, sid)
    assert [a["user_id"] for a in attached.json["attachments"]] == [noe]
    removed = claire.delete(f"/v1/structures/{sid}/attachments/{noe}")
    assert removed.status_code == 200, removed.json
    assert revision_of(removed) == revision_of(attached) + 1 == revision(rt)


def test_a_refused_write_answers_no_revision(api, structure_of):
    claire = api.person("claire@example.org")
    sid = structure_of(claire)["id"]
    r = claire.delete(f"/v1/structures/{sid}/attachments/{claire.user['id']}")
    assert r.status_code == 409, r.json
    assert "Authz-Revision" not in r.headers and "revision" not in r.json


def test_a_bulk_refusal_answers_the_latest_revision_though_it_changes_no_right(
    api, rt, structure_of
):
    claire = api.person("claire@example.org")
    structure_of(claire)
    r = claire.post("/v1/attachment-requests/refusals", json={"ids": [999], "reason": "No."})
    assert r.status_code == 200, r.json
    assert revision_of(r) == revision(rt)
    assert [o["ok"] for o in r.json["results"]] == [False]


@pytest.fixture
def forgetful(app):
    """A route that changes rights and forgets to answer its revision."""

    def view():
        session = db()
        bump_revision(session)
        commit(session, runtime())
        return {"done": True}

    app.add_url_rule("/v1/forgetful", "forgetful", view, methods=["POST"])
    return app


def test_a_view_that_commits_a_change_of_rights_without_its_revision_is_an_error_in_tests(
    forgetful, api, rt
):
    """The guard of api/revisions.py: a new route cannot forget the revision."""
    ada = api.person("ada@example.org")
    before = revision(rt)
    with pytest.raises(RuntimeError, match="mark it @revisioned"):
        ada.post("/v1/forgetful")
    assert revision(rt) == before + 1  # it did commit: only the answer was wrong
