"""Removing an attachment: the user's grants and pending requests go with it,
the principal cannot be removed, and only the structure's managers remove.
"""

from __future__ import annotations

from sqlalchemy import select

from models import Attachment, Subscription
from tests.support.api import attach_directly
from tests.support.membership import (
    BASE,
    NOT_MANAGERS,
    allowed,
    ask_attachment,
    ask_subscription,
    attached,
    history,
    login_of,
    make_actor,
    process,
    request_status,
    snapshot,
)
from tests.support.rows import revision


def test_removing_an_attachment_removes_its_grants(api, rt, bakery):
    claire, sid = bakery.claire, bakery.id
    lucie = attached(api, bakery, "lucie@login.example")
    req = ask_subscription(lucie, sid, ("issued_invoices", None, "modify"))
    assert process(claire, "subscription", req["id"], "validation").status_code == 200
    at = revision(rt)
    assert allowed(lucie, sid, "issued_invoices", "modify", at=at)

    r = claire.delete(f"/v1/structures/{sid}/attachments/{lucie.user['id']}")
    assert r.status_code == 200, r.json
    assert r.json["revision"] == int(r.headers["Authz-Revision"])
    after = revision(rt)
    assert after == at + 1
    for space, action in (("issued_invoices", "consult"), ("my_account", "consult")):
        assert not allowed(lucie, sid, space, action, at=after)
    [entry] = history(claire, sid, action="attachment.deleted")
    assert (entry["comment"], entry["target_user_id"], entry["actor_id"]) == (
        "Deleted",
        lucie.user["id"],
        claire.user["id"],
    )
    with rt.sessions() as s:
        assert {
            a.status
            for a in s.scalars(select(Attachment).where(Attachment.user_id == lucie.user["id"]))
        } == {"deleted"}
        assert {
            sub.status
            for sub in s.scalars(
                select(Subscription).where(Subscription.user_id == lucie.user["id"])
            )
        } == {"deactivated"}
    again = claire.delete(f"/v1/structures/{sid}/attachments/{lucie.user['id']}")
    assert (again.status_code, again.json["code"]) == (404, "not_found")


def test_removing_an_attachment_closes_the_users_pending_requests(api, rt, bakery):
    """Once removed, a user's pending requests on the structure are closed: none
    can be validated later and come back to life if they are attached again."""
    claire, sid = bakery.claire, bakery.id
    lucie = attached(api, bakery, "lucie@login.example")
    sub_req = ask_subscription(lucie, sid, ("issued_invoices", None, "modify"))
    att_req = ask_attachment(lucie, sid, [bakery.services["BOUTIQUE"]])
    assert claire.delete(f"/v1/structures/{sid}/attachments/{lucie.user['id']}").status_code == 200
    for kind, req in (("subscription", sub_req), ("attachment", att_req)):
        assert request_status(rt, kind, req["id"]) == "refused", kind
        assert (
            claire.get(BASE[kind], query_string={"structure_id": sid, "status": "pending"}).json[
                "total"
            ]
            == 0
        )
        r = process(claire, kind, req["id"], "validation")
        assert (r.status_code, r.json["code"]) == (409, "request_processed"), kind
    attach_directly(claire, sid, login_of(lucie))
    assert not allowed(lucie, sid, "issued_invoices", "consult", at=revision(rt))


def test_the_principal_cannot_be_removed(api, rt, bakery):
    claire, sid = bakery.claire, bakery.id
    paul = attached(api, bakery, "paul@login.example", role="secondary")
    before = snapshot(rt, sid)
    for remover in (claire, paul):
        r = remover.delete(f"/v1/structures/{sid}/attachments/{claire.user['id']}")
        assert (r.status_code, r.json["code"]) == (409, "user_is_principal")
    assert snapshot(rt, sid) == before
    assert allowed(claire, sid, None, "attachment_requests.process", at=before["revision"])


def test_only_managers_of_that_structure_remove_attachments(api, rt, bakery, structure_of):
    lucie = attached(api, bakery, "lucie@login.example")
    for actor, status, code in NOT_MANAGERS:
        who = make_actor(actor, api, rt, bakery, structure_of)
        before = snapshot(rt, bakery.id)
        r = who.delete(f"/v1/structures/{bakery.id}/attachments/{lucie.user['id']}")
        assert (r.status_code, r.json["code"]) == (status, code), actor
        assert snapshot(rt, bakery.id) == before, actor
