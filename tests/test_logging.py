"""Logs: AUTHZ_LOG_FORMAT=json writes one JSON object per line with the request's
context; exceptions are one record; probes are quiet at INFO; and no secret the
service handles (passwords, tokens, API keys, technical secrets, activation
links) ever reaches a log line."""

from __future__ import annotations

import io
import json
import logging
import subprocess
from collections.abc import Iterator

import pytest

from authz import logs, mail
from tests.support.api import PASSWORD, Api, activation_token, create_structure, outbox
from tests.support.live import authz_command, serve_env, serving
from tests.support.logs import closed, json_lines
from tests.support.logs import json_app as make_json_app
from tests.support.rows import client_key


@pytest.fixture
def json_app(database_url, tmp_path) -> Iterator:
    app = make_json_app(database_url, tmp_path / "var")
    yield app
    closed(app)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything logged meanwhile, at every level, in the JSON format."""
    with json_lines(logging.DEBUG) as out:
        yield out


def records(out: io.StringIO) -> list[dict]:
    """Every line parsed: a line that is not one JSON object fails the test."""
    lines = out.getvalue().splitlines()
    assert lines
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in parsed)
    return parsed


def test_a_request_is_one_json_record_with_its_context(json_app, captured):
    client = json_app.test_client()
    r = client.get("/v1/me", headers={"X-Request-ID": "req-42"})
    assert r.status_code == 401
    [access] = [r for r in records(captured) if r["logger"] == "authz.access"]
    assert access["request_id"] == "req-42"
    assert access["route"] == "/v1/me" and access["method"] == "GET"
    assert access["status"] == 401 and access["duration_ms"] >= 0
    assert access["level"] == "INFO" and access["time"].endswith("+00:00")


def test_the_caller_is_named_by_id(json_app, captured):
    rt = json_app.extensions["authz"]
    key = client_key(rt)
    client = json_app.test_client()
    r = client.post(
        "/v1/checks",
        json={"user_id": 1, "structure_id": 1, "space": "my_account", "action": "consult"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200
    [access] = [r for r in records(captured) if r["logger"] == "authz.access"]
    assert access["caller"].startswith("client:")
    assert key not in captured.getvalue()


def test_an_exception_is_one_record_with_its_stack(captured):
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("authz.test").exception("it failed")
    [record] = [r for r in records(captured) if r["logger"] == "authz.test"]
    assert record["message"] == "it failed"
    assert "Traceback" in record["exception"] and "RuntimeError: boom" in record["exception"]


def test_probes_are_quiet_at_info(json_app, captured):
    client = json_app.test_client()
    logging.getLogger().setLevel(logging.INFO)
    for _ in range(3):
        assert client.get("/health/ready").status_code == 200
        assert client.get("/health/live").status_code == 200
    shown = [r for r in records_or_none(captured) if r["level"] != "DEBUG"]
    assert shown == []


def records_or_none(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_gunicorn_probe_access_lines_are_dropped_unless_debugging():
    probe = logging.LogRecord("gunicorn.access", logging.INFO, "", 0, "x", None, None)
    probe.args = {"U": "/health/ready"}
    other = logging.LogRecord("gunicorn.access", logging.INFO, "", 0, "x", None, None)
    other.args = {"U": "/v1/checks"}
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.INFO)
        assert not logs.QuietProbes().filter(probe)
        assert logs.QuietProbes().filter(other)
        root.setLevel(logging.DEBUG)
        assert logs.QuietProbes().filter(probe)
    finally:
        root.setLevel(level)


def test_a_broad_session_logs_no_secret(json_app, captured, tmp_path):
    """Sign-up, activation, log-in (right and wrong), technical users and their
    secret reset, client keys, decisions, refusals and mail delivery, all at
    DEBUG: every line is JSON, and none holds a secret that went through."""
    rt = json_app.extensions["authz"]
    client = json_app.test_client()
    api = Api(client, rt)
    secrets: list[str] = [PASSWORD]
    assert api.signup("ada@example.org").status_code == 201
    token = activation_token(rt, "ada@example.org")
    secrets.append(token)
    [activation_mail] = [m for m in outbox(rt, "ada@example.org") if m.kind == "activation"]
    link = next(w for w in activation_mail.body.split() if "token=" in w)
    secrets.append(link)
    r = client.post("/v1/accounts/activation", json={"token": token, "password": PASSWORD})
    assert r.status_code == 200
    # A wrong password, a reused activation token, a password as the login.
    client.post("/v1/auth/token", json={"login_email": "ada@example.org", "password": "nope" * 3})
    client.post("/v1/accounts/activation", json={"token": token, "password": PASSWORD})
    client.post("/v1/auth/token", json={"login_email": PASSWORD, "password": PASSWORD})
    r = client.post("/v1/auth/token", json={"login_email": "ada@example.org", "password": PASSWORD})
    assert r.status_code == 200
    bearer = r.json["access_token"]
    secrets.append(bearer)
    ada = Api(client, rt, bearer)
    structure = create_structure(ada, "73282932000074")
    sid = structure["id"]
    tech = ada.post(f"/v1/structures/{sid}/technical-users", json={"label": "Till"}).json
    secrets.append(tech["secret"])
    renewed = ada.post(
        f"/v1/structures/{sid}/technical-users/{tech['user_id']}/secret", json={"confirm": True}
    ).json
    secrets.append(renewed["secret"])
    client.post("/v1/auth/technical-token", json={"login": tech["login"], "secret": tech["secret"]})
    r = client.post(
        "/v1/auth/technical-token", json={"login": tech["login"], "secret": renewed["secret"]}
    )
    assert r.status_code == 200
    secrets.append(r.json["access_token"])
    key = client_key(rt)
    secrets.append(key)
    keyed = {"Authorization": f"Bearer {key}"}
    question = {"user_id": 1, "structure_id": sid, "space": "my_account", "action": "consult"}
    client.post("/v1/checks", json={**question, "explain": True}, headers=keyed)
    client.post("/v1/checks/batch", json={"checks": [question] * 3}, headers=keyed)
    client.post(
        "/access/v1/evaluation",
        json={
            "subject": {"type": "user", "id": "1"},
            "resource": {"type": "space", "id": f"{sid}/my_account"},
            "action": {"name": "consult"},
        },
        headers=keyed,
    )
    client.get("/v1/me", headers={"Authorization": f"Bearer {key[:-2]}xx"})
    client.get(f"/v1/accounts/activation?token={token}")
    ada.post("/v1/accounts/activation-email", json={"login_email": "ada@example.org"})
    ada.get("/v1/users/1/permissions")
    ada.get(f"/v1/structures/{sid}/users")
    mail.deliver_all_due(rt.sessions, rt.settings)
    client.delete("/v1/auth/token", headers={"Authorization": f"Bearer {bearer}"})

    logged = records(captured)
    assert any(r["logger"] == "authz.access" for r in logged)
    text = captured.getvalue()
    for secret in secrets:
        assert secret not in text, f"a secret was logged: {secret[:6]}…"


def test_authz_serve_in_json_writes_only_json_lines(tmp_path):
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    env = serve_env(url, tmp_path / "var", log_format="json")
    subprocess.run([authz_command(), "db", "upgrade"], env=env, check=True, timeout=120)
    log = tmp_path / "serve.log"
    with serving(env, log) as server:
        for _ in range(3):
            assert server.fetch("/health/ready")[0] == 200
        assert server.call("GET", "/v1/me")[0] == 401
        status, _ = server.fetch("/metrics")
        assert status == 200
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert {line["logger"] for line in lines} >= {"gunicorn.error", "authz.access"}
    [me] = [line for line in lines if line.get("route") == "/v1/me"]
    assert me["status"] == 401 and me["pid"] in server_pids(lines)
    assert not [line for line in lines if str(line.get("route", "")).startswith("/health")]
    assert not [line for line in lines if line["logger"].startswith("alembic")]


def server_pids(lines: list[dict]) -> set[int]:
    """The workers' pids, from gunicorn's "Booting worker with pid: N" lines."""
    return {
        int(line["message"].rsplit(" ", 1)[1])
        for line in lines
        if line["message"].startswith("Booting worker with pid")
    }
