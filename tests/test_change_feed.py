"""GET /v1/changes: what changed at each policy revision, for client
applications that cache decisions; long polling; 410 when the log no longer
reaches the caller's revision; retention pruned by `authz maintenance`."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from api import create_app
from authz.runtime import close_runtime
from authz.workflows.maintenance import run_maintenance
from authz.workflows.records import bump_revision, commit
from models import utcnow
from tests.support.rows import key_headers, revision


@pytest.fixture
def key(rt) -> dict[str, str]:
    return key_headers(rt)


def feed(client, key, **query):
    r = client.get("/v1/changes", query_string=query, headers=key)
    assert r.status_code == 200, r.json
    return r.json


def test_without_after_revision_the_feed_gives_where_to_start_from(client, rt, key):
    page = feed(client, key)
    assert page == {
        "revisions": [],
        "next_after_revision": revision(rt),
        "latest_revision": revision(rt),
        "more": False,
    }


def test_each_revision_names_what_it_changed(api, client, rt, key, structure_of):
    start = feed(client, key)["next_after_revision"]
    ada = api.person("ada@example.org")
    sid = structure_of(ada)["id"]
    page = feed(client, key, after_revision=start)
    changes = [
        (c["kind"], c["user_id"], c["structure_id"])
        for r in page["revisions"]
        for c in r["changes"]
    ]
    assert ("structure", None, sid) in changes
    assert ("membership", ada.user["id"], sid) in changes
    assert page["next_after_revision"] == page["latest_revision"] == revision(rt)
    assert [r["revision"] for r in page["revisions"]] == list(range(start + 1, revision(rt) + 1))
    assert page["more"] is False
    # Nothing after the last one.
    assert feed(client, key, after_revision=page["next_after_revision"])["revisions"] == []


def test_pages_follow_each_other_with_next_after_revision(client, rt, key):
    start = revision(rt)
    with rt.sessions() as session:
        for user in (1, 2, 3):
            bump_revision(session, users=[user])
            commit(session, rt)
    seen, after = [], start
    while True:
        page = feed(client, key, after_revision=after, limit=2)
        seen += [(r["revision"], r["changes"][0]["user_id"]) for r in page["revisions"]]
        after = page["next_after_revision"]
        if not page["more"]:
            break
        assert len(page["revisions"]) == 2
    assert seen == [(start + 1, 1), (start + 2, 2), (start + 3, 3)]


def test_a_policy_version_and_a_full_reload_are_named(client, rt, key):
    start = revision(rt)
    with rt.sessions() as session:
        bump_revision(session)  # no scope: anything may have changed
        commit(session, rt)
    [entry] = feed(client, key, after_revision=start)["revisions"]
    assert [c["kind"] for c in entry["changes"]] == ["all"]


def test_a_long_poll_answers_within_a_second_of_a_change(client, rt, key):
    start = revision(rt)

    def later():
        time.sleep(0.5)
        with rt.sessions() as session:
            bump_revision(session, users=[7])
            commit(session, rt)

    writer = threading.Thread(target=later)
    asked = time.monotonic()
    writer.start()
    page = feed(client, key, after_revision=start, wait=10)
    waited = time.monotonic() - asked
    writer.join()
    assert [r["revision"] for r in page["revisions"]] == [start + 1]
    assert 0.4 < waited < 1.5


def test_a_long_poll_waits_no_longer_than_the_setting(settings_overrides):
    app = create_app({**settings_overrides, "changes_wait_max_seconds": 0.5})
    try:
        rt = app.extensions["authz"]
        key = key_headers(rt)
        asked = time.monotonic()
        page = feed(app.test_client(), key, after_revision=revision(rt), wait=30)
        assert page["revisions"] == [] and 0.4 < time.monotonic() - asked < 1.5
    finally:
        close_runtime(app.extensions["authz"])


def test_a_revision_the_log_no_longer_reaches_is_gone(client, rt, key):
    start = revision(rt)
    with rt.sessions() as session:
        bump_revision(session, users=[1])
        commit(session, rt)
        bump_revision(session, users=[2])
        commit(session, rt)
    days = rt.settings.change_log_retention_days
    with rt.sessions() as session:
        counts = run_maintenance(session, rt, now=utcnow() + dt.timedelta(days=days, hours=1))
    assert counts["policy_changes"] >= 2
    r = client.get("/v1/changes", query_string={"after_revision": start}, headers=key)
    assert (r.status_code, r.json["code"]) == (410, "changes_gone")
    assert r.mimetype == "application/problem+json"
    # Starting again from the latest revision works.
    assert feed(client, key, after_revision=feed(client, key)["next_after_revision"])


def test_a_revision_ahead_of_the_database_is_gone(client, rt, key):
    r = client.get("/v1/changes", query_string={"after_revision": revision(rt) + 5}, headers=key)
    assert (r.status_code, r.json["code"]) == (410, "changes_gone")


def test_the_log_is_kept_for_its_retention(client, rt, key):
    start = revision(rt)
    with rt.sessions() as session:
        bump_revision(session, users=[1])
        commit(session, rt)
    days = rt.settings.change_log_retention_days
    with rt.sessions() as session:
        run_maintenance(session, rt, now=utcnow() + dt.timedelta(days=days, hours=-1))
    assert len(feed(client, key, after_revision=start)["revisions"]) == 1


@pytest.mark.parametrize(
    "query", [{"after_revision": -1}, {"limit": 0}, {"limit": 1001}, {"wait": -1}]
)
def test_invalid_arguments_are_refused(client, key, query):
    r = client.get("/v1/changes", query_string=query, headers=key)
    assert (r.status_code, r.json["code"]) == (422, "validation_failed")


def test_the_feed_is_for_client_applications_only(api, client):
    ada = api.person("ada@example.org")
    r = ada.get("/v1/changes")
    assert (r.status_code, r.json["code"]) == (403, "clients_only")
    assert client.get("/v1/changes").status_code == 401
