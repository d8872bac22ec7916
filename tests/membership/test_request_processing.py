"""Processing attachment and subscription requests (DOMAIN.md, "What managers
do" items 1-2), the rules both kinds share: who may validate or refuse, at
most once even under concurrency, in one transaction, one by one or in bulk
(one outcome per id), a refusal with a reason and granting nothing, a
validation granting exactly what was asked, the requester notified, and no
new request on an inactive structure.
"""

from __future__ import annotations

import importlib
import itertools
import threading

import pytest
from sqlalchemy import func, select

from models import Attachment, AttachmentRequest, Structure, Subscription, SubscriptionRequest
from tests.support.api import attach_directly
from tests.support.membership import (
    ATT,
    BASE,
    DESIGNATION,
    GRANT,
    KINDS,
    NOT_MANAGERS,
    SUB,
    allowed,
    ask_attachment,
    ask_subscription,
    attached,
    bulk,
    check,
    contact_of,
    lines_of,
    login_of,
    make_actor,
    notifications,
    pending_request,
    person,
    process,
    request_status,
    snapshot,
)
from tests.support.rows import key_headers, revision, set_status


@pytest.mark.parametrize("kind", KINDS)
def test_only_managers_of_that_structure_act_on_its_requests(api, rt, bakery, structure_of, kind):
    _, req = pending_request(kind, api, bakery, "julien@login.example")
    base = BASE[kind]
    for actor, status, code in NOT_MANAGERS:
        who = make_actor(actor, api, rt, bakery, structure_of)
        before = snapshot(rt, bakery.id)
        assert who.get(f"{base}/{req['id']}").status_code == 404, actor
        assert req["id"] not in [r["id"] for r in who.get(base).json["items"]], actor
        for op in ("validation", "refusal"):
            r = process(who, kind, req["id"], op)
            assert (r.status_code, r.json["code"]) == (status, code), (actor, op, r.json)
            r = bulk(who, kind, [req["id"]], op)
            assert r.status_code == 200
            assert [(o["ok"], o["code"]) for o in r.json["results"]] == [(False, code)], actor
        assert snapshot(rt, bakery.id) == before, actor
        assert request_status(rt, kind, req["id"]) == "pending"


@pytest.mark.parametrize("kind", KINDS)
def test_principal_and_secondary_managers_process_requests(api, rt, bakery, kind):
    paul = attached(api, bakery, "paul@login.example", role="secondary")
    for i, manager in enumerate((bakery.claire, paul)):
        requester, req = pending_request(kind, api, bakery, f"julien{i}@login.example")
        assert manager.get(f"{BASE[kind]}/{req['id']}").status_code == 200
        assert process(manager, kind, req["id"], "validation").status_code == 200
        space, action = GRANT[kind]
        assert allowed(requester, bakery.id, space, action, at=revision(rt))


@pytest.mark.parametrize("kind", KINDS)
def test_nobody_validates_or_refuses_their_own_request(api, rt, bakery, kind):
    """A secondary manager of ATELIER asks for more; they may not decide it."""
    svc = bakery.services
    paul = attached(api, bakery, "paul@login.example", role="secondary", services=["ATELIER"])
    if kind == "attachment":
        req = ask_attachment(paul, bakery.id, [svc["BOUTIQUE"]])
    else:
        req = ask_subscription(paul, bakery.id, ("works_invoices", svc["ATELIER"], "modify"))
    before = snapshot(rt, bakery.id)
    for op in ("validation", "refusal"):
        r = process(paul, kind, req["id"], op)
        assert (r.status_code, r.json["code"]) == (403, "own_request"), r.json
        r = bulk(paul, kind, [req["id"]], op)
        assert [(o["ok"], o["code"]) for o in r.json["results"]] == [(False, "own_request")]
    assert snapshot(rt, bakery.id) == before
    # Another manager of the structure may; Paul stays a secondary manager.
    r = process(bakery.claire, kind, req["id"], "validation")
    assert r.status_code == 200, r.json
    at = revision(rt)
    assert allowed(paul, bakery.id, None, "attachment_requests.process", at=at)
    if kind == "attachment":
        assert allowed(paul, bakery.id, "manager_activities", "consult", service="BOUTIQUE", at=at)


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_is_processed_at_most_once(api, rt, bakery, kind):
    for first, second in itertools.product(("validation", "refusal"), repeat=2):
        _, req = pending_request(kind, api, bakery, f"{first}.{second}@login.example")
        assert process(bakery.claire, kind, req["id"], first).status_code == 200
        before = snapshot(rt, bakery.id)
        again = process(bakery.claire, kind, req["id"], second)
        assert (again.status_code, again.json["code"]) == (409, "request_processed")
        again = bulk(bakery.claire, kind, [req["id"]], second)
        assert [(o["ok"], o["code"]) for o in again.json["results"]] == [
            (False, "request_processed")
        ]
        assert snapshot(rt, bakery.id) == before, (first, second)
        assert request_status(rt, kind, req["id"]) == (
            "validated" if first == "validation" else "refused"
        )


@pytest.mark.parametrize(
    "kind, ops",
    [
        ("attachment", ("validation",)),
        ("subscription", ("validation",)),
        ("attachment", ("validation", "refusal")),
    ],
)
def test_a_request_is_processed_once_under_concurrency(app, api, rt, bakery, kind, ops):
    """16 managers' clicks at the same instant: exactly one wins, the others get
    409 request_processed; one history entry, one mail, one revision bump."""
    requester, req = pending_request(kind, api, bakery, "julien@login.example")
    before = snapshot(rt, bakery.id)
    threads_n = 16
    barrier = threading.Barrier(threads_n)
    results: list = [None] * threads_n
    token = bakery.claire.token

    def click(i: int) -> None:
        client = app.test_client()
        op = ops[i % len(ops)]
        body = {"reason": "Refusée"} if op == "refusal" else {}
        try:
            barrier.wait(timeout=30)
            r = client.post(
                f"{BASE[kind]}/{req['id']}/{op}",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
            results[i] = (op, r.status_code, r.get_json())
        except Exception as exc:  # noqa: BLE001 - reported below, not lost in the thread
            results[i] = (op, "exception", repr(exc))

    threads = [threading.Thread(target=click, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert all(r is not None for r in results), results
    winners = [r for r in results if r[1] == 200]
    losers = [r for r in results if r[1] != 200]
    assert len(winners) == 1, results
    assert {(status, body["code"]) for _, status, body in losers} == {(409, "request_processed")}, (
        results
    )
    final = "validated" if winners[0][0] == "validation" else "refused"
    assert request_status(rt, kind, req["id"]) == final
    after = snapshot(rt, bakery.id)
    new_entries = [
        action
        for entry_id, action in after["history"]
        if (entry_id, action) not in before["history"]
    ]
    assert new_entries == [f"{kind}_request.{final}"]
    assert after["mails"] == before["mails"] + 1
    assert after["revision"] == before["revision"] + (1 if final == "validated" else 0)
    space, action = GRANT[kind]
    assert allowed(requester, bakery.id, space, action, at=after["revision"]) == (
        final == "validated"
    )


def _written(session, kind: str, request_id: int, user_id: int) -> tuple:
    """What the transaction has written so far: the request's status and the
    user's validated grants of that kind."""
    model = AttachmentRequest if kind == "attachment" else SubscriptionRequest
    grant = Attachment if kind == "attachment" else Subscription
    return (
        session.scalar(select(model.status).where(model.id == request_id)),
        session.scalar(
            select(func.count())
            .select_from(grant)
            .where(grant.user_id == user_id, grant.status == "validated")
        ),
    )


def _fail_after(real, *, call_real: bool, seen: list, witness):
    """A stand-in that does the real work (when asked), flushes everything
    written so far to the database, notes it, then fails: what a crash just
    before COMMIT leaves in the transaction."""

    def failing(session, *args, **kwargs):
        if call_real:
            real(session, *args, **kwargs)
        session.flush()
        seen.append(witness(session))
        raise RuntimeError("injected failure before commit")

    return failing


# Where a failure is injected, after the grant is written: the names as the
# workflow module looks them up (both import `notify` from records, whose
# `notify` calls records' `queue_mail`).
FAILURE_POINTS = {
    "attachment": [
        ("validation", "authz.workflows.attachments", "notify"),
        ("validation", "authz.workflows.records", "queue_mail"),
        ("validation", "authz.workflows.attachments", "commit"),
        ("refusal", "authz.workflows.attachments", "notify"),
        ("refusal", "authz.workflows.attachments", "commit"),
    ],
    "subscription": [
        ("validation", "authz.workflows.subscriptions", "notify"),
        ("validation", "authz.workflows.records", "queue_mail"),
        ("validation", "authz.workflows.subscriptions", "commit"),
        ("refusal", "authz.workflows.subscriptions", "notify"),
        ("refusal", "authz.workflows.subscriptions", "commit"),
    ],
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_failure_before_commit_leaves_nothing_half_applied(api, rt, bakery, monkeypatch, kind):
    """The grant, its history entry, its mail and the revision bump are one
    transaction: a crash after the grant was written leaves the request
    pending, no grant, no entry, no mail, the revision and the decision as
    they were, and the caller a 500 problem."""
    requester, req = pending_request(kind, api, bakery, "julien@login.example")
    before = snapshot(rt, bakery.id)
    space, action = GRANT[kind]
    for op, module, name in FAILURE_POINTS[kind]:
        target = importlib.import_module(module)
        seen: list = []
        monkeypatch.setattr(
            target,
            name,
            _fail_after(
                getattr(target, name),
                call_real=name != "commit",
                seen=seen,
                witness=lambda session: _written(session, kind, req["id"], requester.user["id"]),
            ),
        )
        r = process(bakery.claire, kind, req["id"], op)
        monkeypatch.undo()
        where = (op, module, name)
        # The failure came after the request was claimed and the grant written…
        assert seen == [("validated", 1) if op == "validation" else ("refused", 0)], where
        # …and none of it survived.
        assert r.status_code == 500, where
        assert r.content_type == "application/problem+json"
        assert r.json["code"] == "internal_error", where
        assert "injected" not in r.get_data(as_text=True)  # no internals leak
        assert snapshot(rt, bakery.id) == before, where
        assert request_status(rt, kind, req["id"]) == "pending", where
        decision = check(requester, requester.user["id"], bakery.id, space, action)
        assert not decision["allowed"] and decision["revision"] == before["revision"], where
    # Nothing was left locked or half-done: without the fault, it goes through.
    assert process(bakery.claire, kind, req["id"], "validation").status_code == 200
    assert allowed(requester, bakery.id, space, action, at=revision(rt))


@pytest.mark.parametrize("kind", KINDS)
def test_bulk_gives_one_outcome_per_id_and_processes_the_valid_ones(
    api, rt, bakery, structure_of, kind
):
    claire = bakery.claire
    done = pending_request(kind, api, bakery, "done@login.example")[1]["id"]
    assert process(claire, kind, done, "refusal").status_code == 200
    # A pending request on someone else's structure.
    bob = person(api, "bob@login.example")
    other = structure_of(bob, "Bob SARL")
    stranger = person(api, "stranger@login.example")
    if kind == "attachment":
        foreign = ask_attachment(stranger, other["id"])["id"]
    else:
        attach_directly(bob, other["id"], login_of(stranger))
        foreign = ask_subscription(stranger, other["id"], ("issued_invoices", None, "consult"))[
            "id"
        ]
    unknown = 999_999
    for op in ("validation", "refusal"):
        valid = [
            pending_request(kind, api, bakery, f"{op}{i}@login.example")[1]["id"] for i in range(2)
        ]
        r = bulk(claire, kind, [valid[0], done, foreign, unknown, valid[1]], op)
        assert r.status_code == 200, r.json
        assert [(o["id"], o["ok"], o["code"]) for o in r.json["results"]] == [
            (valid[0], True, None),
            (done, False, "request_processed"),
            (foreign, False, "not_found"),
            (unknown, False, "not_found"),
            (valid[1], True, None),
        ], op
        final = "validated" if op == "validation" else "refused"
        assert [request_status(rt, kind, i) for i in (*valid, done, foreign)] == [
            final,
            final,
            "refused",
            "pending",
        ]


@pytest.mark.parametrize("kind", KINDS)
def test_a_refusal_needs_a_reason(api, rt, bakery, kind):
    _, req = pending_request(kind, api, bakery, "julien@login.example")
    before = snapshot(rt, bakery.id)
    for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": None}):
        r = bakery.claire.post(f"{BASE[kind]}/{req['id']}/refusal", json=body)
        assert r.status_code == 422, body
        assert r.content_type == "application/problem+json"
        assert "reason" in r.json["errors"], body
        r = bakery.claire.post(f"{BASE[kind]}/refusals", json={"ids": [req["id"]], **body})
        assert r.status_code == 422 or [o["code"] for o in r.json["results"]] == [
            "reason_required"
        ], body
    assert snapshot(rt, bakery.id) == before


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_request_grants_nothing(api, rt, bakery, kind):
    requester, req = pending_request(kind, api, bakery, "julien@login.example")
    before = revision(rt)
    assert process(bakery.claire, kind, req["id"], "refusal").status_code == 200
    assert revision(rt) == before  # no right changed
    space, action = GRANT[kind]
    assert not check(requester, requester.user["id"], bakery.id, space, action, at=before)[
        "allowed"
    ]
    with rt.sessions() as s:
        subs = s.scalars(
            select(Subscription).where(Subscription.user_id == requester.user["id"])
        ).all()
        atts = s.scalars(select(Attachment).where(Attachment.user_id == requester.user["id"])).all()
    assert subs == []
    if kind == "attachment":
        assert [a.status for a in atts] == ["refused"]
        assert requester.get(f"/v1/structures/{bakery.id}").status_code == 404


# (space, service, action, allowed) for a simple user attached to BOUTIQUE with a
# validated consultation subscription to issued_invoices on BOUTIQUE.
EXACT_GRANTS = [
    ("issued_invoices", "BOUTIQUE", "consult", True),
    ("issued_invoices", "BOUTIQUE", "modify", False),
    ("issued_invoices", "BOUTIQUE", "create", False),
    ("issued_invoices", None, "consult", False),  # granted on one service only
    ("issued_invoices", "ATELIER", "consult", False),  # not attached there
    ("works_invoices", "BOUTIQUE", "consult", False),  # no subscription, not opened
    ("issued_solicitations", "BOUTIQUE", "consult", False),
    ("my_account", "BOUTIQUE", "modify", True),  # simple users' default (spaces.yaml)
    ("manager_activities", "BOUTIQUE", "consult", False),
    (None, None, "structure.view", True),
    (None, None, "attachment_requests.process", False),
    (None, None, "attachments.create", False),
]


def test_a_validated_attachment_and_subscription_allow_exactly_what_was_granted(api, rt, bakery):
    svc = bakery.services
    marc = person(api, "marc@login.example")
    req = ask_attachment(marc, bakery.id, [svc["BOUTIQUE"]])
    assert process(bakery.claire, "attachment", req["id"], "validation").status_code == 200
    req = ask_subscription(marc, bakery.id, ("issued_invoices", svc["BOUTIQUE"], "consult"))
    assert process(bakery.claire, "subscription", req["id"], "validation").status_code == 200
    at = revision(rt)
    key = key_headers(rt)
    got = []
    for space, service, action, _ in EXACT_GRANTS:
        mine = check(marc, marc.user["id"], bakery.id, space, action, service=service, at=at)
        theirs = check(
            api, marc.user["id"], bakery.id, space, action, service=service, at=at, headers=key
        )
        assert mine["allowed"] == theirs["allowed"]
        got.append((space, service, action, mine["allowed"]))
    assert got == EXACT_GRANTS
    rule = check(
        marc, marc.user["id"], bakery.id, "issued_invoices", "consult", service="BOUTIQUE", at=at
    )["rule"]
    assert rule.startswith("subscription:")


@pytest.mark.parametrize("kind", KINDS)
def test_the_requester_is_notified_at_their_contact_email(api, rt, bakery, kind):
    noun = "Attachment to" if kind == "attachment" else "Subscription on"
    for op, verb in (("validation", "validated"), ("refusal", "refused")):
        requester, req = pending_request(
            kind, api, bakery, f"{op}@login.example", contact=f"{op}@contact.example"
        )
        assert contact_of(requester) != login_of(requester)
        r = process(
            bakery.claire,
            kind,
            req["id"],
            op,
            **({"reason": "Motif du refus"} if op == "refusal" else {}),
        )
        assert r.status_code == 200, r.json
        mail = notifications(rt, contact_of(requester))[-1]
        assert mail.subject == f"{noun} {DESIGNATION} {verb}"
        assert mail.status == "pending"  # in the outbox, for the mail sender
        if op == "refusal":
            assert "Motif du refus" in mail.body
        assert notifications(rt, login_of(requester)) == []


def test_an_inactive_structure_accepts_no_new_attachment_or_request(api, rt, bakery):
    claire, sid = bakery.claire, bakery.id
    lucie = attached(api, bakery, "lucie@login.example")
    early = person(api, "early@login.example")
    early_request = ask_attachment(early, sid)
    julien = person(api, "julien@login.example")
    set_status(rt, Structure, sid, "inactive")
    before = snapshot(rt, sid)

    r = julien.post(ATT, json={"structure_id": sid, "whole_structure": True})
    assert (r.status_code, r.json["code"]) == (409, "structure_inactive")
    r = lucie.post(
        SUB, json={"structure_id": sid, "lines": lines_of(("issued_invoices", None, "consult"))}
    )
    assert (r.status_code, r.json["code"]) == (409, "structure_inactive")
    # Nor is anyone attached directly, or through a request made before.
    r = claire.post(
        f"/v1/structures/{sid}/attachments",
        json={"login_email": login_of(julien), "whole_structure": True},
    )
    assert (r.status_code, r.json["code"]) in {
        (403, "action_not_allowed"),
        (409, "structure_inactive"),
    }
    r = process(claire, "attachment", early_request["id"], "validation")
    assert (r.status_code, r.json["code"]) in {
        (403, "action_not_allowed"),
        (409, "structure_inactive"),
    }
    assert snapshot(rt, sid) == before
