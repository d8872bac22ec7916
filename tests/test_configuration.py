"""Configuration: every AUTHZ_* setting checked at start with a one-line error,
unknown AUTHZ_* names warned about, and gunicorn's own settings honoured
(configuration file, GUNICORN_CMD_ARGS) under `authz serve`."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from api import StartupError, create_app
from authz.config import ROOT, RULES, SettingError, Settings, load_settings, settings_table
from cli import main
from cli.serve import ServiceApplication
from tests.support.backend import command_env
from tests.support.live import free_port

AUTHZ = str(Path(sys.executable).parent / "authz")


# --- every setting is checked -------------------------------------------------------


@pytest.mark.parametrize(
    "variable, value, accepts",
    [
        ("AUTHZ_TOKEN_TTL_SECONDS", "8h", "an integer >= 1"),
        ("AUTHZ_TOKEN_TTL_SECONDS", "0", "an integer >= 1"),
        ("AUTHZ_ACTIVATION_TTL_SECONDS", "10", "an integer >= 60"),
        ("AUTHZ_SMTP_PORT", "70000", "a port number from 1 to 65535"),
        ("AUTHZ_SMTP_STARTTLS", "maybe", "true or false"),
        ("AUTHZ_MAIL_BACKGROUND", "2", "true or false"),
        ("AUTHZ_SMTP_TIMEOUT_SECONDS", "nan", "a number > 0"),
        ("AUTHZ_SMTP_TIMEOUT_SECONDS", "-1", "a number > 0"),
        ("AUTHZ_DECISION_CHECK_INTERVAL_SECONDS", "soon", "a number >= 0"),
        ("AUTHZ_PROXY_HOPS", "-1", "an integer >= 0"),
        ("AUTHZ_PAGE_SIZE_MAX", "10", "a value >= AUTHZ_PAGE_SIZE (50)"),
        ("AUTHZ_MAIL_RETRY_MAX_SECONDS", "1", "a value >= AUTHZ_MAIL_RETRY_BASE_SECONDS"),
        ("AUTHZ_ARGON2_MEMORY_KIB", "16", "at least 8 KiB per lane"),
        ("AUTHZ_LOG_LEVEL", "loud", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("AUTHZ_DATABASE_URL", "mysql://db/authz", "a SQLAlchemy URL of SQLite or PostgreSQL"),
        ("AUTHZ_DATABASE_URL", "not a url", "a SQLAlchemy URL of SQLite or PostgreSQL"),
        ("AUTHZ_POLICY_DIR", "/no/such/folder", "an existing folder of policy files"),
        ("AUTHZ_PUBLIC_BASE_URL", "authz.example.org", "an http(s) URL"),
        ("AUTHZ_PUBLIC_BASE_URL", "https://a.example/?x=1", "an http(s) URL"),
        ("AUTHZ_TRUSTED_HOSTS", "localhost, evil example", "host names separated by commas"),
        ("AUTHZ_MAIL_FROM", "nobody", "an e-mail address"),
        ("AUTHZ_BIND", "8000", "HOST:PORT"),
        ("AUTHZ_WORKERS", "two", "an integer >= 1"),
        ("AUTHZ_THREADS", "0", "an integer >= 1"),
        ("AUTHZ_GUNICORN_CONFIG", "/no/such/gunicorn.conf.py", "an existing gunicorn"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_and_what_it_accepts(variable, value, accepts):
    with pytest.raises(SettingError) as refused:
        load_settings(environ={variable: value})
    message = str(refused.value)
    assert message.startswith(f"{variable}: expected ")
    assert accepts in message
    assert "\n" not in message


def test_every_setting_has_a_rule():
    assert set(RULES) == {f.name for f in dataclasses.fields(Settings)}


def test_a_refused_database_url_does_not_show_its_password():
    with pytest.raises(SettingError) as refused:
        load_settings(environ={"AUTHZ_DATABASE_URL": "mysql://bob:s3cret@db/authz"})
    assert "s3cret" not in str(refused.value)
    assert "bob:***@db" in str(refused.value)


def test_overrides_are_checked_like_the_environment():
    with pytest.raises(SettingError, match=r"^AUTHZ_PAGE_SIZE: expected an integer >= 1, got 0$"):
        load_settings({"page_size": 0}, environ={})
    with pytest.raises(SettingError, match="AUTHZ_WORKERS"):
        load_settings({"workers": 2.5}, environ={})


def test_good_values_are_typed():
    settings = load_settings(
        environ={
            "AUTHZ_WORKERS": " 3 ",
            "AUTHZ_SMTP_STARTTLS": "yes",
            "AUTHZ_MAIL_POLL_SECONDS": "2.5",
            "AUTHZ_LOG_LEVEL": "debug",
            "AUTHZ_BIND": "0.0.0.0:8000,unix:/run/authz.sock",
            "AUTHZ_DATABASE_URL": "postgresql+psycopg://authz:pw@db:5432/authz",
        }
    )
    assert (settings.workers, settings.smtp_starttls, settings.mail_poll_seconds) == (3, True, 2.5)
    assert settings.log_level == "DEBUG"


def test_a_bad_setting_stops_every_command_with_one_line_and_exit_1(tmp_path):
    env = {"AUTHZ_VAR_DIR": str(tmp_path), "AUTHZ_LOGIN_MAX_FAILURES": "five"}
    for args in (["db", "upgrade"], ["demo"], ["policy", "test"], ["serve"]):
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 1, args
        assert result.output == (
            "error: AUTHZ_LOGIN_MAX_FAILURES: expected an integer >= 1, got 'five'\n"
        )


def test_a_bad_setting_prints_no_traceback_from_the_installed_command(tmp_path):
    env = {**os.environ, "AUTHZ_VAR_DIR": str(tmp_path), "AUTHZ_SMTP_PORT": "smtp"}
    done = subprocess.run(
        [AUTHZ, "db", "upgrade"], env=env, check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr == (
        "error: AUTHZ_SMTP_PORT: expected a port number from 1 to 65535, got 'smtp'\n"
    )
    assert not (tmp_path / "authz.db").exists()


def test_create_app_refuses_a_bad_setting_with_a_one_line_startup_error(settings_overrides):
    with pytest.raises(StartupError) as refused:
        create_app({**settings_overrides, "batch_max": 0})
    assert str(refused.value) == "AUTHZ_BATCH_MAX: expected an integer >= 1, got 0"


# --- unknown AUTHZ_* names -----------------------------------------------------------


def test_unknown_variables_are_warned_about_once_each_with_a_suggestion(tmp_path):
    env = {
        "AUTHZ_VAR_DIR": str(tmp_path),
        "AUTHZ_TOKEN_TTL": "60",
        "AUTHZ_SMTP_HOSTNAME": "mx",
        "AUTHZ_SOMETHING_ELSE": "1",
        "AUTHZ_TEST_POSTGRES_URL": "",  # the test suite's own: not warned about
        "AUTHZ_CI_PG_DB": "x",  # CI's own
    }
    result = CliRunner().invoke(main, ["policy", "test"], env=env)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == [
        (
            "warning: AUTHZ_SMTP_HOSTNAME is not a setting and is ignored "
            "(did you mean AUTHZ_SMTP_HOST?)"
        ),
        "warning: AUTHZ_SOMETHING_ELSE is not a setting and is ignored",
        (
            "warning: AUTHZ_TOKEN_TTL is not a setting and is ignored "
            "(did you mean AUTHZ_TOKEN_TTL_SECONDS?)"
        ),
    ]


def test_create_app_logs_unknown_variables(settings_overrides, monkeypatch, caplog):
    monkeypatch.setenv("AUTHZ_WORKER", "3")
    with caplog.at_level(logging.WARNING, logger="authz"):
        app = create_app(settings_overrides)
    app.extensions["authz"].decider.close()
    assert "AUTHZ_WORKER is not a setting and is ignored (did you mean AUTHZ_WORKERS?)" in (
        caplog.text
    )


def test_the_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(AUTHZ_[A-Z0-9_]+)`", readme, re.MULTILINE))
    listed |= set(
        re.findall(r"^\| `AUTHZ_[A-Z0-9_]+` / `(AUTHZ_[A-Z0-9_]+)`", readme, re.MULTILINE)
    )
    assert {name for name, _ in settings_table()} <= listed


# --- gunicorn's settings under `authz serve` -------------------------------------------


@pytest.fixture
def serve_env(database_url, tmp_path) -> dict[str, str]:
    # Blank what the caller's environment may hold: CliRunner adds to os.environ.
    return {
        **command_env(database_url, tmp_path / "var"),
        "GUNICORN_CMD_ARGS": "",
        "AUTHZ_GUNICORN_CONFIG": "",
    }


@pytest.fixture
def started(monkeypatch) -> list[ServiceApplication]:
    """The gunicorn applications `authz serve` would have run."""
    runs: list[ServiceApplication] = []
    # A function, not runs.append: set on the class, it must bind `self`.
    monkeypatch.setattr(ServiceApplication, "run", lambda self: runs.append(self))  # noqa: PLW0108
    return runs


def serve(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, ["serve", *args], env=env)
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def test_serve_takes_bind_workers_and_threads_from_the_settings(serve_env, started):
    serve({**serve_env, "AUTHZ_BIND": "0.0.0.0:8001", "AUTHZ_WORKERS": "3", "AUTHZ_THREADS": "6"})
    cfg = started[0].cfg
    assert (cfg.bind, cfg.workers, cfg.threads) == (["0.0.0.0:8001"], 3, 6)
    assert (cfg.worker_class_str, cfg.preload_app, cfg.proc_name) == (
        "api.gunicorn_worker.ProblemThreadWorker",
        False,
        "authz",
    )


def test_gunicorn_cmd_args_override_the_settings(serve_env, started):
    env = {
        **serve_env,
        "AUTHZ_WORKERS": "3",
        "GUNICORN_CMD_ARGS": "--workers 5 --timeout 77 --bind 127.0.0.1:18199",
    }
    serve(env)
    cfg = started[0].cfg
    assert (cfg.workers, cfg.timeout, cfg.bind, cfg.threads) == (5, 77, ["127.0.0.1:18199"], 4)


def test_a_config_file_is_read_then_gunicorn_cmd_args_then_the_options(
    serve_env, started, tmp_path
):
    config = tmp_path / "gunicorn.conf.py"
    config.write_text("workers = 4\ngraceful_timeout = 12\nthreads = 9\nnot_a_setting = 1\n")
    serve({**serve_env, "AUTHZ_GUNICORN_CONFIG": str(config)})
    serve({**serve_env, "GUNICORN_CMD_ARGS": f"--config {config} --threads 3"})
    serve(
        {**serve_env, "GUNICORN_CMD_ARGS": "--threads 3"},
        "--config",
        str(config),
        "--threads",
        "2",
    )
    got = [(s.cfg.workers, s.cfg.graceful_timeout, s.cfg.threads) for s in started]
    assert got == [(4, 12, 9), (4, 12, 3), (4, 12, 2)]


@pytest.mark.parametrize(
    "cmd_args, message",
    [
        ("--no-such-option", "error: GUNICORN_CMD_ARGS: unrecognized arguments: --no-such-option"),
        ("--workers many", "error: GUNICORN_CMD_ARGS: argument -w/--workers: invalid"),
        ("--preload", "error: preload_app is not supported"),
        ("--config /no/such/file.py", "error: gunicorn configuration file '/no/such/file.py'"),
    ],
)
def test_bad_gunicorn_settings_are_one_line_errors(serve_env, started, cmd_args, message):
    output = serve({**serve_env, "GUNICORN_CMD_ARGS": cmd_args}, code=1)
    assert output.startswith(message)
    assert output.count("\n") == 1
    assert started == []


def test_a_real_server_honours_gunicorn_cmd_args(cli_ready_env, tmp_path):
    port = free_port()
    env = {
        **cli_ready_env,
        "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --workers 1 --threads 2",
    }
    server = subprocess.Popen(
        [AUTHZ, "serve"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/health/ready", timeout=2
                ) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.2)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert len(children) == 1  # --workers 1, and the master is the process started
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode == 0


def test_gunicorn_started_on_create_app_prints_a_bad_setting_in_one_line(cli_ready_env, tmp_path):
    port = free_port()
    env = {**cli_ready_env, "AUTHZ_PAGE_SIZE": "many"}
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "api:create_app()",
        ],
        env=env,
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "AUTHZ_PAGE_SIZE: expected an integer >= 1, got 'many'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def cli_ready_env(database_url, tmp_path) -> dict[str, str]:
    """The environment of a real `authz` process on the test's migrated database."""
    return command_env(database_url, tmp_path / "var")
