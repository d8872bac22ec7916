"""Change of identifier: the successor carries on, the original only lets
existing documents be consulted and processed."""

from __future__ import annotations

from sqlalchemy import select

from models import Attachment, AttachmentRequest, Structure, Subscription
from tests.support.rows import attachment_row, client_key, grant, subscription_row, user_row

NEW_SIRET = "55208131766522"


def check(api, key, **q):
    r = api.post("/v1/checks", json=q, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.json
    return r.json


def setup_world(api, rt, structure_of):
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org")
    eve = api.person("eve@example.org")
    st = structure_of(ada)
    sid = st["id"]
    svc = ada.post(f"/v1/structures/{sid}/services", json={"code": "S1", "label": "One"}).json
    ada.put(
        f"/v1/structures/{sid}/spaces",
        json={
            "spaces": [
                {"space": "issued_invoices"},
                {"space": "works_invoices", "service_id": svc["id"]},
            ]
        },
    )
    grant(
        rt,
        bob.user["id"],
        sid,
        role="secondary",
        subscriptions=[("issued_invoices", "modify", None)],
    )
    eve.post("/v1/attachment-requests", json={"structure_id": sid, "comment": "hi"})
    return ada, bob, eve, st, svc, client_key(rt)


def test_identifier_change_duplicates_and_deactivates_the_original(api, rt, structure_of):
    ada, bob, eve, st, svc, key = setup_world(api, rt, structure_of)
    sid = st["id"]
    before = check(
        api, key, user_id=bob.user["id"], structure_id=sid, space="issued_invoices", action="create"
    )
    assert before["allowed"] is True
    r = bob.post(
        f"/v1/structures/{sid}/identifier-change",
        json={"identifier_type": "SIRET", "identifier_value": NEW_SIRET, "confirm": True},
    )
    assert r.status_code == 201, r.json
    new = r.json
    assert new["origin_id"] == sid and new["identifier_value"] == NEW_SIRET
    old = ada.get(f"/v1/structures/{sid}").json
    assert old["status"] == "inactive" and old["successor_id"] == new["id"]
    after = {"user_id": bob.user["id"], "space": "issued_invoices"}
    on_old = check(api, key, structure_id=sid, action="create", **after)
    assert on_old["allowed"] is False and "inactive" in on_old["reason"]
    assert check(api, key, structure_id=sid, action="modify", **after)["allowed"] is True
    assert check(api, key, structure_id=sid, action="consult", **after)["allowed"] is True
    assert (
        check(
            api,
            key,
            structure_id=new["id"],
            action="create",
            at_least_revision=on_old["revision"],
            **after,
        )["allowed"]
        is True
    )
    # Everything came along: services, spaces, roles, the pending request.
    assert [s["code"] for s in ada.get(f"/v1/structures/{new['id']}/services").json["items"]] == [
        "S1"
    ]
    spaces = ada.get(f"/v1/structures/{new['id']}/spaces").json["spaces"]
    assert {"space": "issued_invoices", "service_id": None} in spaces
    assert any(
        e["space"] == "works_invoices" and e["service_id"] not in (None, svc["id"]) for e in spaces
    )
    assert (
        check(
            api, key, user_id=ada.user["id"], structure_id=new["id"], action="principal.designate"
        )["allowed"]
        is True
    )
    pending = ada.get(
        "/v1/attachment-requests", query_string={"structure_id": new["id"], "status": "pending"}
    ).json
    assert pending["total"] == 1 and pending["items"][0]["user_id"] == eve.user["id"]
    with rt.sessions() as s:
        old_req = s.scalar(select(AttachmentRequest).where(AttachmentRequest.structure_id == sid))
        assert old_req.status == "refused"
    # The original accepts no new attachment or request.
    assert eve.post("/v1/attachment-requests", json={"structure_id": sid}).status_code == 409
    assert ada.post(
        f"/v1/structures/{sid}/attachments",
        json={"user_id": eve.user["id"], "whole_structure": True},
    ).status_code in (403, 409)
    history = ada.get(
        f"/v1/structures/{sid}/history", query_string={"action": "structure.identifier_changed"}
    ).json
    assert history["total"] == 1


def test_technical_attachments_are_not_carried_over(api, rt, structure_of):
    ada, bob, _eve, st, _svc, _key = setup_world(api, rt, structure_of)
    with rt.sessions() as s:
        tech = user_row(
            "t@technical.invalid",
            "Cash",
            "Register",
            contact_email="ada@example.org",
            kind="technical",
        )
        s.add(tech)
        s.flush()
        s.add(attachment_row(tech.id, st["id"], "technical"))
        s.add(subscription_row(tech.id, st["id"], "issued_invoices", "modify"))
        s.commit()
        tech_id = tech.id
    r = ada.post(
        f"/v1/structures/{st['id']}/identifier-change",
        json={"identifier_type": "SIRET", "identifier_value": NEW_SIRET, "confirm": True},
    )
    assert r.status_code == 201
    with rt.sessions() as s:
        copied = s.scalars(
            select(Attachment.user_id).where(Attachment.structure_id == r.json["id"])
        ).all()
        assert tech_id not in copied and bob.user["id"] in copied
        assert (
            s.scalar(
                select(Subscription.id).where(
                    Subscription.structure_id == r.json["id"], Subscription.user_id == tech_id
                )
            )
            is None
        )


def test_identifier_change_refusals(api, rt, structure_of):
    ada, _bob, eve, st, _svc, _key = setup_world(api, rt, structure_of)
    sid = st["id"]
    body = {"identifier_type": "SIRET", "identifier_value": NEW_SIRET, "confirm": True}
    assert eve.post(f"/v1/structures/{sid}/identifier-change", json=body).status_code == 404
    unconfirmed = ada.post(
        f"/v1/structures/{sid}/identifier-change", json={**body, "confirm": False}
    )
    assert unconfirmed.status_code == 422 and unconfirmed.json["code"] == "confirmation_required"
    bad = ada.post(
        f"/v1/structures/{sid}/identifier-change",
        json={**body, "identifier_value": "55208131766523"},
    )
    assert bad.status_code == 422
    same = ada.post(
        f"/v1/structures/{sid}/identifier-change",
        json={**body, "identifier_value": st["identifier_value"]},
    )
    assert same.status_code == 422 and same.json["code"] == "same_identifier"
    with rt.sessions() as s:
        s.get(Structure, sid).centrally_managed = True
        s.commit()
    central = ada.post(f"/v1/structures/{sid}/identifier-change", json=body)
    assert central.status_code == 403 and central.json["code"] == "centrally_managed"
    with rt.sessions() as s:
        s.get(Structure, sid).centrally_managed = False
        s.commit()
    assert ada.post(f"/v1/structures/{sid}/identifier-change", json=body).status_code == 201
    again = ada.post(
        f"/v1/structures/{sid}/identifier-change",
        json={**body, "identifier_value": "44306184100047"},
    )
    assert again.status_code == 403  # the original is inactive now
