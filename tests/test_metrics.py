"""GET /metrics: Prometheus's text format, readable per AUTHZ_METRICS_ACCESS, and
correct across gunicorn workers (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api import create_app
from authz import metrics
from authz.config import SettingError, load_settings
from authz.runtime import build_runtime, close_runtime
from authz.workflows.clients import create_client
from models import OutboxMail
from tests.support.api import create_structure
from tests.support.backend import app_settings
from tests.support.live import authz_command, serve_env, serving
from tests.support.rows import key_headers

TOKEN = "metrics-scraper-token-0123456789"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match[3])
    return total


def scrape(client, **kw) -> str:
    r = client.get("/metrics", **kw)
    assert r.status_code == 200, r.data
    assert r.content_type.startswith("text/plain")
    return r.get_data(as_text=True)


def check(client, rt, user_id: int, structure_id: int) -> None:
    r = client.post(
        "/v1/checks",
        json={
            "user_id": user_id,
            "structure_id": structure_id,
            "space": "manager_activities",
            "action": "consult",
        },
        headers=key_headers(rt),
    )
    assert r.status_code == 200, r.json


def test_a_scrape_counts_decisions_by_api_and_result_and_requests_by_route(api, client, rt):
    owner = api.person("owner@example.org")
    structure = create_structure(owner, "73282932000074")
    before = scrape(client)
    check(client, rt, owner.user["id"], structure["id"])  # principal: role default allows
    check(client, rt, 999_999, structure["id"])  # unknown subject: denied
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("authz_decisions_total", api="check", result="allowed") == 1
    assert delta("authz_decisions_total", api="check", result="denied") == 1
    assert delta("authz_decision_seconds_count", api="check") == 2
    assert delta("authz_http_requests_total", route="/v1/checks", status="200") == 2
    assert delta("authz_http_request_seconds_count", route="/v1/checks") == 2
    assert sample(after, "authz_policy_revision") >= 1
    assert sample(after, "authz_policy_revision_lag") == 0
    assert sample(after, "authz_scrape_database_up") == 1
    assert sample(after, "authz_index_entries", kind="users") >= 1
    for family in (
        "authz_index_reloads_total",
        "authz_mail_outbox_pending",
        "authz_mail_outbox_oldest_age_seconds",
        "authz_login_failures_total",
        "authz_login_lockouts_total",
        "authz_mail_delivery_failures_total",
        "authz_db_pool_checked_out",
    ):
        assert f"# TYPE {family.removesuffix('_total')}" in after, family


def test_the_outbox_and_log_in_failures_are_measured(api, client, rt):
    api.signup("pending@example.org")  # an activation mail waits in the outbox
    before = scrape(client)
    r = client.post(
        "/v1/auth/token", json={"login_email": "pending@example.org", "password": "wrong one!"}
    )
    assert r.status_code == 401
    after = scrape(client)
    with rt.read_sessions() as s:
        pending = len(s.scalars(select(OutboxMail).where(OutboxMail.status == "pending")).all())
    assert sample(after, "authz_mail_outbox_pending") == pending >= 1
    assert sample(after, "authz_mail_outbox_oldest_age_seconds") >= 0
    assert (
        sample(after, "authz_login_failures_total", reason="wrong_secret")
        - sample(before, "authz_login_failures_total", reason="wrong_secret")
        == 1
    )


def test_routes_are_counted_by_template_never_by_path(api, client):
    owner = api.person("owner@example.org")
    create_structure(owner, "73282932000074")
    owner.get("/v1/structures/1")
    text = scrape(client)
    assert 'route="/v1/structures/<id:structure_id>"' in text
    assert 'route="/v1/structures/1"' not in text


@pytest.fixture
def make_app(database_url, tmp_path):
    apps = []

    def make(**overrides):
        app = create_app({**app_settings(database_url, tmp_path / "var"), **overrides})
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        close_runtime(app.extensions["authz"])


def test_by_default_only_callers_on_the_host_itself_may_scrape(make_app):
    client = make_app()
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert refused.status_code == 404
    assert refused.json["code"] == "not_found"
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_with_a_token_only_its_bearer_may_scrape_from_anywhere(make_app):
    client = make_app(metrics_access="token", metrics_token_sha256=DIGEST)
    far = {"REMOTE_ADDR": "10.1.2.3"}
    ok = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, environ_base=far)
    assert ok.status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        assert client.get("/metrics", headers=headers).status_code == 404


def test_metrics_can_be_turned_off(make_app):
    assert make_app(metrics_access="off").get("/metrics").status_code == 404


@pytest.mark.parametrize(
    "overrides, variable",
    [
        ({"metrics_access": "everyone"}, "AUTHZ_METRICS_ACCESS"),
        ({"metrics_access": "token"}, "AUTHZ_METRICS_TOKEN_SHA256"),
        ({"metrics_token_sha256": TOKEN}, "AUTHZ_METRICS_TOKEN_SHA256"),
        ({"metrics_token_sha256": DIGEST.upper()}, "AUTHZ_METRICS_TOKEN_SHA256"),
    ],
)
def test_metrics_settings_are_checked(overrides, variable):
    with pytest.raises(SettingError) as refused:
        load_settings(overrides, environ={})
    assert refused.value.variable == variable
    assert TOKEN not in str(refused.value)


def test_two_workers_add_up_to_the_checks_made(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    env = serve_env(url, tmp_path / "var", threads="1")
    subprocess.run([authz_command(), "db", "upgrade"], env=env, check=True, timeout=120)
    rt = build_runtime(load_settings(environ=env))
    try:
        with rt.sessions() as session:
            _, key = create_client(session, rt, "portal")
            session.commit()
    finally:
        close_runtime(rt)
    question = {"user_id": 1, "structure_id": 1, "space": "issued_invoices", "action": "consult"}
    with serving(env, tmp_path / "serve.log", workers=2) as server:
        made = 0
        workers: set[int] = set()
        while made < 60 or len(workers) < 2:
            status, answer = server.call("POST", "/v1/checks", question, key)
            assert status == 200, answer
            made += 1
            workers = {pid for pid, _, _, path in server.served() if path == "/v1/checks"}
            assert made < 400, "the checks never reached both workers"
        # Each worker writes its hot-path counts a second at a time (the one
        # answering the scrape writes its own first): exact within seconds.
        deadline = time.monotonic() + 5 * metrics.FLUSH_SECONDS
        while True:
            status, text = server.fetch("/metrics")
            assert status == 200, text
            counted = sample(text, "authz_decisions_total", api="check")
            assert counted <= made
            if counted == made or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sample(text, "authz_decisions_total", api="check") == made
        assert sample(text, "authz_decisions_total", api="check", result="denied") == made
        assert sample(text, "authz_http_requests_total", route="/v1/checks") == made
        # One revision gauge per live worker.
        assert len(re.findall(r"^authz_policy_revision\{", text, re.MULTILINE)) == 2
        assert sample(text, "authz_policy_revision_lag") == 0
    directory = re.search(r"authz-metrics-\w+", (tmp_path / "serve.log").read_text())
    assert directory is None or not Path(tempfile.gettempdir(), directory[0]).exists()


def test_a_worker_reported_dead_twice_is_no_error(tmp_path, monkeypatch):
    """gunicorn's child_exit may report one worker twice at shutdown: the
    second finds its live gauges gone, and says nothing."""
    from prometheus_client import multiprocess  # noqa: PLC0415  (what mark_dead calls)

    (tmp_path / "gauge_liveall_4242.db").write_bytes(b"")
    metrics.mark_dead(4242, str(tmp_path))
    assert not list(tmp_path.iterdir())
    metrics.mark_dead(4242, str(tmp_path))  # nothing left: nothing to say

    # Listed, then removed by the other report before this one removes it.
    (tmp_path / "gauge_liveall_4243.db").write_bytes(b"")
    real_remove = multiprocess.os.remove

    def raced(path):
        real_remove(path)
        real_remove(path)  # the second removal is the one that fails

    monkeypatch.setattr(multiprocess.os, "remove", raced)
    metrics.mark_dead(4243, str(tmp_path))


def test_pending_counts_are_written_as_direct_updates_would_write_them():
    """The hot path adds to plain numbers that metrics.Pending writes later
    (into a histogram's buckets and sum, which prometheus-client's observe()
    writes): the same samples either way, at every bucket boundary."""
    from prometheus_client import CollectorRegistry, Counter, Histogram  # noqa: PLC0415

    def made() -> tuple[CollectorRegistry, Any, Any]:
        registry = CollectorRegistry()
        counter = Counter("c", "c", ["api"], registry=registry)
        histogram = Histogram(
            "h", "h", ["api"], buckets=metrics.DECISION_BUCKETS, registry=registry
        )
        return registry, counter.labels("check"), histogram.labels("check")

    values = [0.0, 0.00005, *metrics.DECISION_BUCKETS, 0.0001001, 0.3, 0.5, 0.75, 9.0, 1e-9]
    direct, counted, timed = made()
    for value in values:
        counted.inc(2)
        timed.observe(value)
    deferred, later_counted, later_timed = made()
    pending = metrics.Pending()
    for value in values:
        pending.inc(later_counted, 2)
        pending.observe(later_timed, value)
    assert deferred.get_sample_value("h_count", {"api": "check"}) == 0, "not written yet"
    pending.flush()

    def samples(registry: CollectorRegistry) -> list[tuple[str, dict, float]]:
        return [
            (s.name, s.labels, s.value)
            for family in registry.collect()
            for s in family.samples
            if not s.name.endswith("_created")
        ]

    assert samples(deferred) == samples(direct)
    pending.flush()  # nothing pending: nothing more written
    assert samples(deferred) == samples(direct)
