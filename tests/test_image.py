"""The image, compose.yaml and the wheel smoke script stay in step.

There is no Docker engine where CI runs: scripts/wheel-smoke.sh runs the
image's steps instead (CI runs it after the suite). These tests check what can
silently drift apart: the sources the wheel is built from, the settings both
set, and what the containers run.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex

import pytest
import yaml

from authz.config import RESERVED_PREFIXES, ROOT, Settings

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
SMOKE = (ROOT / "scripts" / "wheel-smoke.sh").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
SETTINGS = {"AUTHZ_" + f.name.upper() for f in dataclasses.fields(Settings)}


def instructions(stage: int) -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's build stage `stage` (0, 1...),
    continuation lines joined, comments left out."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    lines = [line.strip() for line in text.splitlines()]
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        stages[-1].append((word.upper(), rest.strip()))
    return stages[stage]


def test_the_wheel_is_built_from_the_same_sources_in_the_image_and_the_smoke():
    copied: list[str] = []
    for word, args in instructions(0):
        if word == "COPY":
            copied += shlex.split(args)[:-1]
    [listed] = re.findall(r"^SOURCES=\((.*)\)$", SMOKE, re.MULTILINE)
    assert sorted(copied) == sorted(listed.split())
    # ...and those are what the wheel needs: setup.py copies the shipped entries.
    assert {"policies", "migrations", "alembic.ini", "setup.py", "MANIFEST.in"} <= set(copied)


def test_both_build_the_wheel_then_install_that_wheel_into_a_fresh_venv():
    build = " ".join(args for word, args in instructions(0) if word == "RUN")
    runtime = " ".join(args for word, args in instructions(1) if word == "RUN")
    assert "pip wheel --no-cache-dir --no-deps --wheel-dir /dist ." in build
    assert "python -m venv /opt/venv" in runtime
    assert "/opt/venv/bin/pip install --no-cache-dir /tmp/dist/authz_service-*.whl" in runtime
    assert re.search(r'pip" wheel .*--no-deps', SMOKE)
    assert re.search(r'"\$PYTHON" -m venv "\$WORK/venv"\n"\$WORK/venv/bin/pip" install', SMOKE)
    assert '"$WHEEL"' in SMOKE


def test_the_image_runs_as_a_non_root_user_and_execs_authz_serve_as_pid_1():
    runtime = instructions(1)
    [user] = [args for word, args in runtime if word == "USER"]
    assert not user.startswith(("root", "0"))
    [entrypoint] = [args for word, args in runtime if word == "ENTRYPOINT"]
    [cmd] = [args for word, args in runtime if word == "CMD"]
    # Exec form (a JSON array): no shell in between, so authz is PID 1.
    assert json.loads(entrypoint) == ["authz"]
    assert json.loads(cmd) == ["serve"]


def test_the_image_and_the_smoke_set_the_same_serve_settings():
    env = " ".join(args for word, args in instructions(1) if word == "ENV")
    image = set(re.findall(r"(AUTHZ_[A-Z_]+)=", env))
    assert {"AUTHZ_VAR_DIR", "AUTHZ_BIND", "AUTHZ_WORKERS", "AUTHZ_THREADS"} <= image
    exported = set(re.findall(r"^export (.*)$", SMOKE, re.MULTILINE))
    smoke = {name for line in exported for name in re.findall(r"(AUTHZ_[A-Z_]+)=", line)}
    assert image <= smoke


@pytest.mark.parametrize("name", ["Dockerfile", "compose.yaml", "scripts/wheel-smoke.sh"])
def test_every_authz_variable_they_name_is_a_setting(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    named = set(re.findall(r"\bAUTHZ_[A-Z0-9_]*[A-Z0-9]\b", text))
    unknown = {n for n in named - SETTINGS if not n.startswith(RESERVED_PREFIXES)}
    assert not unknown, f"{name} names variables that are not settings: {sorted(unknown)}"


def test_compose_migrates_once_then_starts_two_instances_on_postgresql_with_a_mail_sink():
    services = COMPOSE["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    instances = [name for name, s in services.items() if s.get("image") == "authz:local"]
    instances.remove("migrate")
    assert len(instances) == 2
    ports = set()
    for name in instances:
        service = services[name]
        assert "command" not in service, f"{name} must run the image's CMD (serve)"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        env = service["environment"]
        assert env["AUTHZ_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["AUTHZ_DATABASE_URL"]
        assert env["AUTHZ_SMTP_HOST"] == "mailpit"
        ports.add(service["ports"][0].split(":")[0])
    assert len(ports) == 2
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["mailpit"]["image"].startswith("axllent/mailpit")


def test_ci_runs_the_smoke_after_the_suite():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.index("make test") < ci.index("scripts/wheel-smoke.sh")
