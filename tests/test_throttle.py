"""Every check of a password or secret is throttled by the log-in's lock-out,
and the limit holds under parallel guessing (issue 10, point 2;
authz/workflows/throttle.py)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from api import create_app
from authz.runtime import close_runtime
from authz.workflows import clients
from models import ClientApplication
from tests.support.api import PASSWORD

WRONG = "not the password at all"


@pytest.fixture
def counted(rt, monkeypatch):
    """How many times argon2 verified a secret."""
    calls = []
    real = rt.hasher.verify

    def verify(stored, secret):
        calls.append(secret)
        return real(stored, secret)

    monkeypatch.setattr(rt.hasher, "verify", verify)
    return calls


def _in_parallel(n: int, call) -> list:
    """Run call(i) in n threads released together; their results, in order."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = call(i)
        except Exception as exc:  # noqa: BLE001 - reported by the caller's assertions
            results[i] = repr(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_forty_parallel_wrong_passwords_get_at_most_the_limit_checked(app, api, rt, counted):
    api.person("target@example.org")
    counted.clear()
    limit = rt.settings.login_max_failures

    def guess(_i: int) -> int:
        r = app.test_client().post(
            "/v1/auth/token", json={"login_email": "target@example.org", "password": WRONG}
        )
        return r.status_code

    statuses = _in_parallel(40, guess)
    assert set(statuses) <= {401, 429}, statuses
    assert len(counted) <= limit, len(counted)
    assert sum(s != 429 for s in statuses) <= limit
    # Locked: even the right password is refused without being checked.
    before = len(counted)
    r = api.post("/v1/auth/token", json={"login_email": "target@example.org", "password": PASSWORD})
    assert r.status_code == 429 and len(counted) == before


def test_a_right_password_gives_its_attempt_back(api, rt):
    api.person("ada@example.org")
    for _ in range(3):
        for password in (WRONG, PASSWORD):
            r = api.post(
                "/v1/auth/token", json={"login_email": "ada@example.org", "password": password}
            )
            assert r.status_code == (401 if password == WRONG else 201)


def test_the_deactivation_password_is_throttled(api, rt, counted):
    ada = api.person("ada@example.org")
    limit = rt.settings.login_max_failures
    for _ in range(limit):
        r = ada.post("/v1/me/deactivation", json={"password": WRONG})
        assert (r.status_code, r.json["code"]) == (401, "invalid_credentials")
    counted.clear()
    r = ada.post("/v1/me/deactivation", json={"password": PASSWORD})
    assert (r.status_code, r.json["code"]) == (429, "too_many_attempts"), r.json
    assert int(r.headers["Retry-After"]) > 0 and counted == []
    assert ada.get("/v1/me").json["status"] == "active"
    # The same lock-out as log-in: the login is locked there too.
    r = api.post("/v1/auth/token", json={"login_email": "ada@example.org", "password": PASSWORD})
    assert r.status_code == 429


def test_parallel_wrong_deactivation_passwords_get_at_most_the_limit_checked(app, api, rt, counted):
    ada = api.person("ada@example.org")
    counted.clear()

    def guess(_i: int) -> int:
        client = app.test_client()
        r = client.post(
            "/v1/me/deactivation",
            json={"password": WRONG},
            headers={"Authorization": f"Bearer {ada.token}"},
        )
        return r.status_code

    statuses = _in_parallel(20, guess)
    assert set(statuses) <= {401, 429}, statuses
    assert len(counted) <= rt.settings.login_max_failures


def test_a_deactivation_refused_for_another_reason_does_not_count(api, rt, structure_of):
    ada = api.person("ada@example.org")
    structure_of(ada)
    for _ in range(rt.settings.login_max_failures + 2):
        r = ada.post("/v1/me/deactivation", json={"password": PASSWORD})
        assert (r.status_code, r.json["code"]) == (409, "successors_required")


def test_reactivation_is_throttled(api, rt):
    api.person("ada@example.org")
    body = {"login_email": "ada@example.org", "password": WRONG}
    for _ in range(rt.settings.login_max_failures):
        assert api.post("/v1/me/reactivation", json=body).status_code == 401
    body["password"] = PASSWORD
    assert api.post("/v1/me/reactivation", json=body).status_code == 429


def test_wrong_client_keys_are_throttled_per_address(settings_overrides, rt):
    overrides = {**settings_overrides, "login_max_failures_per_ip": 3}
    app = create_app(overrides)
    try:
        own = app.extensions["authz"]
        with own.sessions() as s:
            _client, key = clients.create_client(s, own, "portal")
            key_id = s.scalar(select(ClientApplication.key_id))
        forged = f"ak_{key_id}_{'A' * 43}"
        http = app.test_client()

        def ask(k: str) -> int:
            return http.get(
                "/v1/users/1/permissions", headers={"Authorization": f"Bearer {k}"}
            ).status_code

        assert [ask(forged) for _ in range(3)] == [401, 401, 401]
        r = http.get("/v1/users/1/permissions", headers={"Authorization": f"Bearer {forged}"})
        assert (r.status_code, r.json["code"]) == (429, "too_many_attempts")
        # The right key from that address is locked out too, until the window ends.
        assert ask(key) == 429
    finally:
        close_runtime(app.extensions["authz"])


def test_technical_secrets_are_throttled_in_parallel(app, api, rt, structure_of, counted):
    ada = api.person("ada@example.org")
    st = structure_of(ada)["id"]
    created = ada.post(f"/v1/structures/{st}/technical-users", json={"label": "ERP"})
    assert created.status_code == 201, created.json
    login = created.json["login"]
    counted.clear()

    def guess(_i: int) -> int:
        r = app.test_client().post(
            "/v1/auth/technical-token", json={"login": login, "secret": "ts_wrong"}
        )
        return r.status_code

    statuses = _in_parallel(20, guess)
    assert set(statuses) <= {401, 429}, statuses
    assert len(counted) <= rt.settings.login_max_failures
