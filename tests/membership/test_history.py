"""The history of a structure (DOMAIN.md, "What managers do" item 10): every
manager action with the comment the guide shows, filters, the detail of an
entry, who may read it, and that nobody can change it."""

from __future__ import annotations

import ast
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import time_machine

import authz
from authz.workflows import records
from models import PLATFORM_ROLES
from tests.support.api import attach_directly
from tests.support.membership import (
    ATT,
    ask_attachment,
    ask_subscription,
    attached,
    history,
    login_of,
    make_actor,
    person,
    process,
    snapshot,
)

# The "Commentaires" column of the guide: the comment of each manager action.
GUIDE_COMMENTS = {
    "attachment_request.validated": "Validated",  # Validée: demande de rattachement…
    "subscription_request.validated": "Validated",  # …ou d'abonnement validée
    "attachment_request.refused": "Refused",  # Refusée: demande de rattachement refusée
    "subscription_request.refused": "Deactivated",  # Désactivée: demande d'abonnement refusée
    "attachment.deleted": "Deleted",  # Supprimé: rattachement supprimé
}


def guide_walk(api, bakery) -> dict:
    """The guide's manager actions on the bakery, in order; returns the people."""
    claire, sid = bakery.claire, bakery.id
    julien = person(api, "julien@login.example", "Julien", "Moreau")
    lucie = person(api, "lucie@login.example", "Lucie", "Petit")
    req = ask_attachment(julien, sid, comment="Vendeur")
    assert (
        process(claire, "attachment", req["id"], "validation", comment="Bienvenue").status_code
        == 200
    )
    req = ask_attachment(lucie, sid, comment="Stagiaire")
    assert (
        process(claire, "attachment", req["id"], "refusal", reason="Pas de stage").status_code
        == 200
    )
    req = ask_subscription(julien, sid, ("issued_invoices", None, "consult"))
    line = req["lines"][0]["id"]
    assert (
        process(
            claire,
            "subscription",
            req["id"],
            "validation",
            lines=[{"id": line, "level": "modify"}],
            comment="Modification accordée",
        ).status_code
        == 200
    )
    req = ask_subscription(julien, sid, ("issued_solicitations", None, "consult"))
    assert (
        process(claire, "subscription", req["id"], "refusal", reason="Pas utile").status_code == 200
    )
    assert claire.delete(f"/v1/structures/{sid}/attachments/{julien.user['id']}").status_code == 200
    return {"julien": julien, "lucie": lucie}


def test_history_shows_every_manager_action_with_the_guides_comment(api, bakery):
    people = guide_walk(api, bakery)
    julien, lucie, claire = people["julien"], people["lucie"], bakery.claire
    entries = history(claire, bakery.id)
    managed = [
        (e["action"], e["comment"], e["actor_id"], e["target_user_id"])
        for e in entries
        if e["action"] in GUIDE_COMMENTS
    ]
    j, c = julien.user["id"], claire.user["id"]
    assert managed == [  # newest first
        ("attachment.deleted", "Deleted", c, j),
        ("subscription_request.refused", "Deactivated", c, j),
        ("subscription_request.validated", "Validated", c, j),
        ("attachment_request.refused", "Refused", c, lucie.user["id"]),
        ("attachment_request.validated", "Validated", c, j),
    ]
    for entry in entries:
        if entry["action"] in GUIDE_COMMENTS:
            assert entry["comment"] == GUIDE_COMMENTS[entry["action"]]
        if entry["action"].startswith(("attachment_request.", "subscription_request.")):
            assert entry["request_kind"] in ("attachment", "subscription")
            assert entry["request_id"] is not None
    # The requests as the users made them are there too, with their comments.
    created = [
        (e["action"], e["comment"])
        for e in entries
        if e["action"].endswith(".created") and e["action"] != "structure.created"
    ]
    assert ("attachment_request.created", "Vendeur") in created
    assert ("attachment_request.created", "Stagiaire") in created


def test_history_detail_shows_before_and_after(api, bakery):
    julien = guide_walk(api, bakery)["julien"]
    claire = bakery.claire
    entries = {e["action"]: e for e in history(claire, bakery.id)}

    def detail(action):
        r = claire.get(f"/v1/history/{entries[action]['id']}")
        assert r.status_code == 200, r.json
        assert r.json["action"] == action and r.json["comment"] == GUIDE_COMMENTS.get(
            action, r.json["comment"]
        )
        return r.json

    validated = detail("attachment_request.validated")
    assert validated["before"]["attachments"] == [
        {
            "service_id": None,
            "role": "simple",
            "status": "pending",
            "valid_from": validated["before"]["attachments"][0]["valid_from"],
            "valid_until": None,
        }
    ]
    assert [
        (a["service_id"], a["role"], a["status"]) for a in validated["after"]["attachments"]
    ] == [(None, "simple", "validated")]
    assert validated["after"]["manager_comment"] == "Bienvenue"

    refused = detail("attachment_request.refused")
    assert refused["after"] == {"reason": "Pas de stage"}

    subscribed = detail("subscription_request.validated")
    assert subscribed["before"] == {"subscriptions": []}
    assert [
        (li["space"], li["service_id"], li["level"]) for li in subscribed["after"]["lines"]
    ] == [("issued_invoices", None, "modify")]
    assert subscribed["after"]["manager_comment"] == "Modification accordée"

    assert detail("subscription_request.refused")["after"] == {"reason": "Pas utile"}

    deleted = detail("attachment.deleted")
    assert deleted["target_user_id"] == julien.user["id"]
    assert [(a["service_id"], a["status"]) for a in deleted["before"]["attachments"]] == [
        (None, "validated")
    ]


def test_history_filters_by_action_user_and_period(api, bakery):
    """Filters: exact action, action prefix ending in '.', user (as actor or
    target), and the period [since, until)."""
    claire, sid = bakery.claire, bakery.id
    julien = person(api, "julien@login.example")
    lucie = person(api, "lucie@login.example")
    # Three steps an hour apart, after everything the fixture wrote (log-in
    # tokens last longer than that).
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def at(hours: float) -> dt.datetime:
        return now + dt.timedelta(hours=hours)

    with time_machine.travel(at(1), tick=False):
        asked = ask_attachment(julien, sid)
    with time_machine.travel(at(2), tick=False):
        assert process(claire, "attachment", asked["id"], "validation").status_code == 200
    with time_machine.travel(at(3), tick=False):
        attach_directly(claire, sid, lucie.user["login_email"])
        req = ask_subscription(lucie, sid, ("issued_invoices", None, "consult"))
        assert process(claire, "subscription", req["id"], "refusal").status_code == 200

    def actions(**filters) -> list[str]:
        return [e["action"] for e in history(claire, sid, **filters)]

    assert actions(action="attachment_request.") == [
        "attachment_request.validated",
        "attachment_request.created",
    ]
    assert actions(action="attachment_request.validated") == ["attachment_request.validated"]
    assert actions(action="attachment_request") == []  # not a prefix: an exact name
    assert actions(action="subscription_request.") == [
        "subscription_request.refused",
        "subscription_request.created",
    ]
    # The prefix is taken literally: no SQL wildcards, same case.
    assert actions(action="%.") == [] and actions(action="attachment_request_") == []
    assert actions(action="ATTACHMENT_REQUEST.") == []

    assert actions(user_id=julien.user["id"]) == [
        "attachment_request.validated",
        "attachment_request.created",
    ]
    assert actions(user_id=lucie.user["id"]) == [
        "subscription_request.refused",
        "subscription_request.created",
        # Lucie's account is active: she was invited, and accepted (tests/support/consent.py).
        "invitation.accepted",
        "invitation.created",
    ]
    assert set(actions(user_id=claire.user["id"])) >= {
        "attachment_request.validated",
        "subscription_request.refused",
        "invitation.created",
    }

    def iso(moment: dt.datetime) -> str:
        return moment.isoformat()

    assert actions(since=iso(at(0.5)), until=iso(at(1.5))) == ["attachment_request.created"]
    assert actions(since=iso(at(1.5)), until=iso(at(2.5))) == ["attachment_request.validated"]
    assert actions(since=iso(at(2.5))) == [
        "subscription_request.refused",
        "subscription_request.created",
        "invitation.accepted",
        "invitation.created",
    ]
    assert "structure.created" in actions(until=iso(at(0.5)))
    assert not {"attachment_request.created", "attachment.created"} & set(
        actions(until=iso(at(0.5)))
    )
    # `since` includes its instant, `until` excludes it; any time zone names
    # the same instant.
    paris = dt.timezone(dt.timedelta(hours=2))
    assert actions(
        since=at(2).astimezone(paris).isoformat(), until=at(3).astimezone(paris).isoformat()
    ) == ["attachment_request.validated"]
    assert actions(since=iso(at(0.5)), until=at(2).astimezone(paris).isoformat()) == [
        "attachment_request.created"
    ]
    # Filters combine; pages come newest first.
    assert actions(action="attachment_request.", user_id=lucie.user["id"]) == []
    assert actions(action="subscription_request.", since=iso(at(2.5))) == [
        "subscription_request.refused",
        "subscription_request.created",
    ]
    everything = history(claire, sid)
    page = claire.get(
        f"/v1/structures/{sid}/history", query_string={"page_size": 2, "page": 2}
    ).json
    assert page["total"] == len(everything)
    assert [e["id"] for e in page["items"]] == [e["id"] for e in everything[2:4]]
    assert [e["created_at"] for e in everything] == sorted(
        (e["created_at"] for e in everything), reverse=True
    )
    bad = claire.get(f"/v1/structures/{sid}/history", query_string={"since": "yesterday"})
    assert bad.status_code == 422 and bad.content_type == "application/problem+json"


# Who may read the bakery's history: (actor, list status, detail status).
READERS = [
    ("principal", 200, 200),
    ("secondary", 200, 200),
    ("simple", 403, 404),
    ("technical", 403, 404),
    ("other_manager", 404, 404),
    ("stranger", 404, 404),
    ("future_secondary", 404, 404),
    ("removed_secondary", 404, 404),
]


def test_only_managers_of_the_structure_read_its_history(api, rt, bakery, structure_of):
    claire, sid = bakery.claire, bakery.id
    entry = history(claire, sid)[0]
    for actor, list_status, detail_status in READERS:
        if actor == "principal":
            who = claire
        elif actor == "secondary":
            who = attached(api, bakery, "paul@login.example", role="secondary")
        else:
            who = make_actor(actor, api, rt, bakery, structure_of)
        listed = who.get(f"/v1/structures/{sid}/history")
        assert listed.status_code == list_status, (actor, listed.json)
        if list_status != 200:
            assert listed.json["code"] == (
                "action_not_allowed" if list_status == 403 else "not_found"
            )
        detail = who.get(f"/v1/history/{entry['id']}")
        assert detail.status_code == detail_status, actor
    # An entry of another structure is not found, like an unknown one.
    other = person(api, "bob@login.example")
    theirs = structure_of(other, "Bob SARL")
    their_entry = history(other, theirs["id"])[0]
    assert claire.get(f"/v1/history/{their_entry['id']}").status_code == 404
    assert claire.get("/v1/history/999999").status_code == 404


@pytest.mark.parametrize("method", ["put", "patch", "delete", "post"])
def test_history_entries_cannot_be_modified(api, rt, bakery, method):
    claire, sid = bakery.claire, bakery.id
    entry = history(claire, sid)[0]
    original = claire.get(f"/v1/history/{entry['id']}").json
    before = snapshot(rt, sid)
    for path in (f"/v1/history/{entry['id']}", f"/v1/structures/{sid}/history"):
        r = getattr(claire, method)(path, json={"comment": "Rewritten", "action": "x"})
        assert r.status_code == 405, (path, r.status_code)
        assert r.content_type == "application/problem+json"
        assert r.json["code"] == "method_not_allowed"
        assert "GET" in r.headers["Allow"]
    assert snapshot(rt, sid) == before
    assert claire.get(f"/v1/history/{entry['id']}").json == original


# --- the declared actions ----------------------------------------------------------


def test_recording_an_undeclared_action_is_refused():
    """records.HISTORY_ACTIONS is the one list of history actions (and of those
    that change rights): an action missing from it cannot be written."""
    with pytest.raises(ValueError, match="not declared"):
        records.record(None, action="structure.renamed", actor=None, structure_id=None)


def _action_literals(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, action) for every literal history action in a module that imports
    records.record: `action=` keywords, defaults of parameters named `action`,
    and literals passed in the position of such a parameter to a function of
    the same module."""
    if not any(
        isinstance(node, ast.ImportFrom)
        and (node.module or "").endswith("records")
        and any(alias.name == "record" for alias in node.names)
        for node in ast.walk(tree)
    ):
        return
    positions: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            names = [a.arg for a in node.args.args]
            if "action" in names:
                bound = 1 if names[0] == "self" else 0
                positions[node.name] = names.index("action") - bound
                # The defaults belong to the last arguments ([-0:] would be all of them).
                defaults = node.args.defaults
                with_default = node.args.args[len(node.args.args) - len(defaults) :]
                for arg, default in zip(with_default, defaults, strict=True):
                    if arg.arg == "action" and isinstance(default, ast.Constant):
                        yield default.lineno, str(default.value)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg != "action":
                continue
            # `action="a"`, or `action="a" if c else "b"` (both branches)
            value = keyword.value
            branches = [value.body, value.orelse] if isinstance(value, ast.IfExp) else [value]
            for branch in branches:
                if isinstance(branch, ast.Constant):
                    yield branch.lineno, str(branch.value)
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        index = positions.get(name or "")
        if index is not None and index < len(node.args):
            given = node.args[index]
            if isinstance(given, ast.Constant) and isinstance(given.value, str):
                yield given.lineno, given.value


def test_every_action_the_code_records_is_declared():
    root = Path(authz.__file__).resolve().parent
    found = {
        (path.relative_to(root.parent).as_posix(), line, action)
        for path in sorted(root.rglob("*.py"))
        for line, action in _action_literals(ast.parse(path.read_text(encoding="utf-8")))
    }
    assert [f for f in found if f[2] not in records.HISTORY_ACTIONS] == []
    # operators.py records f"{role}.appointed" for each platform role.
    appointed = {f"{role}.appointed" for role in PLATFORM_ROLES}
    # Nothing declared that the code never records (a stale entry).
    assert {action for *_, action in found} | appointed == set(records.HISTORY_ACTIONS)


def test_lists_name_people_not_only_ids(api, rt, bakery):
    """Pending requests carry the requester's names and login email; history
    entries the actor's and the target's names (issue 15)."""
    claire, sid = bakery.claire, bakery.id
    julien = person(api, "julien@login.example", "Julien", "Moreau")
    asked = ask_attachment(julien, sid)
    listed = claire.get(ATT, query_string={"structure_id": sid, "status": "pending"}).json
    mine = next(r for r in listed["items"] if r["id"] == asked["id"])
    assert mine["user"] == {
        "id": julien.user["id"],
        "first_name": "Julien",
        "last_name": "Moreau",
        "login_email": login_of(julien),
    }
    assert process(claire, "attachment", asked["id"], "validation").status_code == 200
    entry = history(claire, sid, action="attachment_request.validated")[0]
    assert entry["actor"] == {
        "id": claire.user["id"],
        "first_name": "Claire",
        "last_name": "Martin",
    }
    assert entry["target_user"]["last_name"] == "Moreau"


def test_the_validation_detail_shows_a_service_left_out_as_refused_not_pending(api, bakery):
    """Issue 15: the manager grants ATELIER of ATELIER + BOUTIQUE; the entry's
    `after` shows the rows as they end, BOUTIQUE `refused`."""
    atelier, boutique = bakery.services["ATELIER"], bakery.services["BOUTIQUE"]
    julien = person(api, "julien@login.example")
    asked = ask_attachment(julien, bakery.id, service_ids=[atelier, boutique])
    done = process(
        bakery.claire,
        "attachment",
        asked["id"],
        "validation",
        whole_structure=False,
        service_ids=[atelier],
    )
    assert done.status_code == 200, done.json
    entry = next(
        e
        for e in history(bakery.claire, bakery.id, action="attachment_request.validated")
        if e["request_id"] == asked["id"]
    )
    detail = bakery.claire.get(f"/v1/history/{entry['id']}")
    assert detail.status_code == 200, detail.json
    after = {row["service_id"]: row["status"] for row in detail.json["after"]["attachments"]}
    assert after == {atelier: "validated", boutique: "refused"}
