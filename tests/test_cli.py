"""The `authz` command line, run in-process with click's CliRunner against the
per-test database (SQLite, or PostgreSQL when AUTHZ_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from authz.config import load_settings
from authz.db import alembic_config, schema_is_current
from authz.demo import DEMO_PASSWORD
from authz.runtime import Runtime, build_runtime
from authz.workflows import accounts, clients
from cli.serve import ServiceApplication
from models import (
    ActivationToken,
    AttachmentRequest,
    AuthToken,
    ClientApplication,
    LoginThrottle,
    OutboxMail,
    Space,
    Structure,
    SubscriptionRequest,
    User,
    utcnow,
)
from tests.support.api import VALID_SIRETS, outbox
from tests.support.cli import authz
from tests.support.rows import revision, user_row

KEY_RE = re.compile(r"^ak_[0-9a-f]{16}_\S{43}$", re.MULTILINE)
BAD_SIRET = "73282932000075"  # right length, wrong checksum


def count(rt: Runtime, model, *where) -> int:
    with rt.sessions() as s:
        return s.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


# --- authz db upgrade -------------------------------------------------------


def test_db_upgrade_migrates_an_empty_database_then_changes_nothing(cli_env, tmp_path):
    env = {**cli_env, "AUTHZ_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    rt = build_runtime(load_settings(environ=env))
    head = ScriptDirectory.from_config(alembic_config(rt.engine)).get_current_head()
    first = authz("db", "upgrade", env=env)
    assert f"upgraded from an empty schema to revision {head}." in first.output
    second = authz("db", "upgrade", env=env)
    assert f"already at revision {head}." in second.output
    assert schema_is_current(rt.engine)
    rt.engine.dispose()


def test_db_upgrade_on_a_current_database_only_syncs_the_catalogue(cli_env, cli_rt):
    result = authz("db", "upgrade", env=cli_env)
    assert "already at revision" in result.output
    with cli_rt.sessions() as s:
        assert {sp.code for sp in s.scalars(select(Space))} == {
            e.code for e in cli_rt.policies.spaces
        }


# --- authz clients ----------------------------------------------------------


def create_key(env: dict[str, str], name: str = "invoicing-portal") -> str:
    result = authz("clients", "create", name, env=env)
    assert "not stored" in result.output
    keys = KEY_RE.findall(result.stdout)
    assert len(keys) == 1, result.output
    return keys[0]


def test_a_created_api_key_authenticates_its_client(cli_env, cli_rt):
    key = create_key(cli_env)
    with cli_rt.sessions() as s:
        client = clients.authenticate_client(s, cli_rt, key)
        assert client is not None and client.name == "invoicing-portal"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),  # wrong secret
        lambda key: "ak_0123456789abcdef" + key[len("ak_0123456789abcdef") :],  # unknown key id
        lambda key: key.replace("ak_", "xx_", 1),  # not a key
        lambda _key: "",
    ],
    ids=["wrong_secret", "unknown_key_id", "malformed", "empty"],
)
def test_a_wrong_api_key_is_refused(cli_env, cli_rt, tamper):
    key = create_key(cli_env)
    with cli_rt.sessions() as s:
        assert clients.authenticate_client(s, cli_rt, tamper(key)) is None


def test_a_revoked_client_is_refused_at_once_even_with_a_verified_key(cli_env, cli_rt):
    key = create_key(cli_env)
    with cli_rt.sessions() as s:
        assert clients.authenticate_client(s, cli_rt, key) is not None  # now cached
    result = authz("clients", "revoke", "invoicing-portal", env=cli_env)
    assert "revoked" in result.output
    with cli_rt.sessions() as s:
        assert clients.authenticate_client(s, cli_rt, key) is None


def test_a_replaced_key_hash_refuses_the_old_key_even_when_cached(cli_env, cli_rt):
    key = create_key(cli_env)
    with cli_rt.sessions() as s:
        assert clients.authenticate_client(s, cli_rt, key) is not None
        row = s.scalar(select(ClientApplication))
        row.key_hash = cli_rt.hasher.hash("another secret")
        s.commit()
        assert clients.authenticate_client(s, cli_rt, key) is None


def test_a_repeated_valid_key_pays_argon2_once(cli_env, cli_rt, monkeypatch):
    key = create_key(cli_env)
    calls = []
    verify = cli_rt.hasher.verify
    monkeypatch.setattr(
        cli_rt.hasher, "verify", lambda stored, secret: calls.append(1) or verify(stored, secret)
    )
    with cli_rt.sessions() as s:
        for _ in range(3):
            assert clients.authenticate_client(s, cli_rt, key) is not None
    assert len(calls) == 1


def test_the_database_holds_only_a_hash_of_the_api_key(cli_env, cli_rt):
    key = create_key(cli_env)
    secret = key.split("_", 2)[2]
    with cli_rt.sessions() as s:
        row = s.scalar(select(ClientApplication))
        stored = [str(getattr(row, c.key)) for c in ClientApplication.__table__.columns]
    assert row.key_hash.startswith("$argon2id$")
    assert not any(secret in value or key in value for value in stored)


def test_a_client_name_is_unique(cli_env):
    create_key(cli_env)
    result = authz("clients", "create", "invoicing-portal", code=1, env=cli_env)
    assert result.output.startswith("error: A client application is already named")
    assert "Traceback" not in result.output


def test_revoking_an_unknown_client_is_a_one_line_error(cli_env):
    result = authz("clients", "revoke", "nobody", code=1, env=cli_env)
    assert result.output == "error: No client application is named 'nobody'.\n"


# --- authz structures import ------------------------------------------------


def write_csv(tmp_path: Path, rows: list[tuple[str, str, str]]) -> str:
    path = tmp_path / "structures.csv"
    lines = ["identifier_type,identifier_value,designation", *(",".join(row) for row in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_import_registers_public_structures(cli_env, cli_rt, tmp_path):
    path = write_csv(
        tmp_path,
        [
            ("SIRET", VALID_SIRETS[2], "Commune d'Exemple-sur-Mer"),
            ("SIRET", VALID_SIRETS[3], "Département du Modèle"),
        ],
    )
    result = authz("structures", "import", path, env=cli_env)
    assert "created: 2, skipped (already registered): 0" in result.output
    with cli_rt.sessions() as s:
        registered = {
            (r.identifier_value, r.designation, r.kind) for r in s.scalars(select(Structure))
        }
    assert registered == {
        (VALID_SIRETS[2], "Commune d'Exemple-sur-Mer", "public"),
        (VALID_SIRETS[3], "Département du Modèle", "public"),
    }


def test_import_is_all_or_nothing_and_names_the_bad_line(cli_env, cli_rt, tmp_path):
    path = write_csv(
        tmp_path,
        [
            ("SIRET", VALID_SIRETS[2], "Commune A"),
            ("SIRET", BAD_SIRET, "Commune B"),
            ("SIRET", VALID_SIRETS[3], "Commune C"),
        ],
    )
    result = authz("structures", "import", path, code=1, env=cli_env)
    assert "error: line 3: This SIRET is not valid" in result.output
    assert "created: 0" in result.output
    assert count(cli_rt, Structure) == 0


def test_import_skips_structures_already_registered(cli_env, cli_rt, tmp_path):
    path = write_csv(
        tmp_path, [("SIRET", VALID_SIRETS[2], "Commune A"), ("SIRET", VALID_SIRETS[3], "Commune B")]
    )
    authz("structures", "import", path, env=cli_env)
    again = authz("structures", "import", path, env=cli_env)
    assert "created: 0, skipped (already registered): 2" in again.output
    assert count(cli_rt, Structure) == 2


def test_import_refuses_a_file_that_is_not_utf8(cli_env, cli_rt, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        "identifier_type,identifier_value,designation\n"
        f"SIRET,{VALID_SIRETS[2]},Préfecture\n".encode("latin-1")
    )
    result = authz("structures", "import", str(path), code=1, env=cli_env)
    assert result.output.startswith("error:") and "not UTF-8" in result.output
    assert count(cli_rt, Structure) == 0


# --- authz demo -------------------------------------------------------------


def test_demo_loads_once(cli_env, cli_rt):
    first = authz("demo", env=cli_env)
    assert "Demo data loaded." in first.output
    assert "claire.martin@boulangerie-martin.example" in first.output
    assert DEMO_PASSWORD in first.output
    users, rev = count(cli_rt, User), revision(cli_rt)
    second = authz("demo", env=cli_env)
    assert "already loaded" in second.output
    assert (count(cli_rt, User), revision(cli_rt)) == (users, rev)


def test_demo_has_pending_requests_a_pending_account_and_a_technical_user(cli_env, cli_rt):
    authz("demo", env=cli_env)
    assert count(cli_rt, AttachmentRequest, AttachmentRequest.status == "pending") == 1
    with cli_rt.sessions() as s:
        request = s.scalar(select(SubscriptionRequest))
        assert request.status == "pending" and len(request.lines) == 2
        pending = s.scalar(select(User).where(User.status == "pending"))
        technical = s.scalar(select(User).where(User.kind == "technical"))
        assert technical.password_hash is None
    assert [m.kind for m in outbox(cli_rt, pending.login_email)] == ["activation"]
    assert revision(cli_rt) > 0


@pytest.mark.parametrize(
    "email, designation",
    [
        ("claire.martin@boulangerie-martin.example", "Boulangerie Martin SARL"),
        ("sophie.durand@sainte-exemple.example", "Mairie de Sainte-Exemple"),
        ("thomas.garnier@sainte-exemple.example", "Mairie de Sainte-Exemple"),
    ],
)
def test_a_demo_person_logs_in_and_sees_their_structure(cli_env, client, email, designation):
    authz("demo", env=cli_env)
    login = client.post("/v1/auth/token", json={"login_email": email, "password": DEMO_PASSWORD})
    assert login.status_code == 201, login.json
    listed = client.get(
        "/v1/structures", headers={"Authorization": f"Bearer {login.json['access_token']}"}
    )
    assert listed.status_code == 200
    assert [s["designation"] for s in listed.json["items"]] == [designation]


# --- authz operator create --------------------------------------------------


def test_operator_create_makes_a_pending_operator_with_an_activation_mail(cli_env, cli_rt):
    result = authz("operator", "create", "Ops@Example.org", env=cli_env)
    assert "Created the operator account ops@example.org (pending activation)" in result.output
    with cli_rt.sessions() as s:
        user = accounts.find_by_login(s, "ops@example.org")
        assert (user.status, user.platform_role, user.kind) == ("pending", "operator", "person")
    assert [m.kind for m in outbox(cli_rt, "ops@example.org")] == ["activation"]


def test_operator_create_promotes_an_existing_person_and_keeps_their_status(cli_env, cli_rt):
    with cli_rt.sessions() as s:
        accounts.sign_up(
            s, cli_rt, login_email="ada@example.org", first_name="Ada", last_name="Lovelace"
        )
    result = authz("operator", "create", "ada@example.org", env=cli_env)
    assert "is now a platform operator" in result.output
    again = authz("operator", "create", "ada@example.org", env=cli_env)
    assert "already a platform operator" in again.output
    with cli_rt.sessions() as s:
        user = accounts.find_by_login(s, "ada@example.org")
        assert (user.status, user.platform_role) == ("pending", "operator")
    assert len(outbox(cli_rt, "ada@example.org")) == 1  # no second activation mail


def test_operator_create_refuses_an_invalid_email(cli_env):
    result = authz("operator", "create", "not-an-email", code=1, env=cli_env)
    assert result.output == "error: Not a valid email address.\n"


# --- authz mail deliver / maintenance ---------------------------------------


def test_mail_deliver_sends_the_due_mail(cli_env, cli_rt, tmp_path):
    authz("operator", "create", "ops@example.org", env=cli_env)
    result = authz("mail", "deliver", env=cli_env)
    assert "mail: 1 sent" in result.output
    assert len(list((tmp_path / "var" / "mail").glob("*.eml"))) == 1
    assert count(cli_rt, OutboxMail, OutboxMail.status == "pending") == 0


def test_maintenance_deletes_dead_tokens_and_keeps_live_ones(cli_env, cli_rt):
    now = utcnow()

    def hours(n: int) -> dt.datetime:
        return now + dt.timedelta(hours=n)

    with cli_rt.sessions() as s:
        user = user_row("ada@example.org", "Ada", "Lovelace")
        s.add(user)
        s.flush()
        tokens = {  # name: (expires_at, revoked_at)
            "expired_2_days_ago": (hours(-48), None),
            "revoked_2_days_ago": (hours(8), hours(-48)),
            "expired_1_hour_ago": (hours(-1), None),
            "revoked_1_hour_ago": (hours(8), hours(-1)),
            "live": (hours(8), None),
        }
        for i, (expires, revoked) in enumerate(tokens.values()):
            s.add(
                AuthToken(
                    user_id=user.id,
                    token_hash=bytes([i]) * 32,
                    expires_at=expires,
                    revoked_at=revoked,
                    created_at=hours(-72),
                )
            )
        s.add(ActivationToken(user_id=user.id, token_hash=b"a" * 32, expires_at=hours(-48)))
        s.add(ActivationToken(user_id=user.id, token_hash=b"b" * 32, expires_at=hours(1)))
        lockout = dt.timedelta(seconds=cli_rt.settings.login_lockout_seconds)
        s.add(
            LoginThrottle(
                key="email:old",
                failures=5,
                window_started_at=now - 3 * lockout,
                locked_until=now - 2 * lockout,
            )
        )
        s.add(
            LoginThrottle(
                key="email:locked",
                failures=5,
                window_started_at=now - 2 * lockout,
                locked_until=now + lockout,
            )
        )
        s.add(LoginThrottle(key="ip:recent", failures=1, window_started_at=now))
        s.commit()
    result = authz("maintenance", env=cli_env)
    assert "deleted: 2 auth tokens, 1 activation tokens, 1 login throttles" in result.output
    assert "mail: 0 sent" in result.output
    with cli_rt.sessions() as s:
        assert sorted(
            t.expires_at - now > dt.timedelta(0) for t in s.scalars(select(AuthToken))
        ) == [False, True, True]
        assert [t.token_hash for t in s.scalars(select(ActivationToken))] == [b"b" * 32]
        assert sorted(s.scalars(select(LoginThrottle.key))) == ["email:locked", "ip:recent"]


# --- authz serve ------------------------------------------------------------


def test_serve_refuses_an_unmigrated_database(cli_env, tmp_path, monkeypatch):
    monkeypatch.setattr(ServiceApplication, "run", lambda _self: pytest.fail("gunicorn started"))
    env = {**cli_env, "AUTHZ_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = authz("serve", code=1, env=env)
    assert result.output == (
        "error: The database schema is not at the latest migration: run `authz db upgrade` first.\n"
    )


def test_serve_starts_gunicorn_without_preloading_the_app(cli_env, monkeypatch):
    started: list[ServiceApplication] = []
    # A function, not started.append: set on the class, it must bind `self`.
    monkeypatch.setattr(ServiceApplication, "run", lambda self: started.append(self))  # noqa: PLW0108
    monkeypatch.setattr(
        ServiceApplication, "load", lambda _self: pytest.fail("the app was built in the master")
    )
    authz("serve", "--bind", "127.0.0.1:8765", "--workers", "3", env=cli_env)
    [server] = started
    cfg = server.cfg
    assert (cfg.bind, cfg.workers, cfg.preload_app) == (["127.0.0.1:8765"], 3, False)
    assert cfg.accesslog == "-"
