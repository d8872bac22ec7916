"""The distribution: the built wheel carries the policies, migrations and Alembic
configuration, and an installed package finds them without the checkout.

The end-to-end proof (a fresh venv, the wheel installed, every command run from
a folder outside the checkout) is scripts/wheel-smoke.sh, which CI runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz import config
from authz.config import ROOT, SHIPPED, load_settings, shipped
from authz.db import alembic_config
from authz.runtime import build_runtime, close_runtime
from tests.support.backend import BACKEND


def _tracked(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(ROOT)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


# What the wheel holds does not depend on the database: built once, in the
# SQLite pass (scripts/wheel-smoke.sh then runs the built wheel on its own).
pytestmark = pytest.mark.skipif(
    BACKEND == "postgresql", reason="backend-independent: runs in the SQLite pass"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Iterator[zipfile.ZipFile]:
    """The wheel built as the image and the smoke script build it: from a copy of
    the sources they list (so no stale build/ folder of the checkout gets in)."""
    smoke = (ROOT / "scripts" / "wheel-smoke.sh").read_text(encoding="utf-8")
    [sources] = re.findall(r"^SOURCES=\((.*)\)$", smoke, re.MULTILINE)
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in sources.split():
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("authz_service-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def test_the_wheel_ships_the_policies_migrations_and_alembic_ini_as_they_are(wheel):
    names = set(wheel.namelist())
    expected = {**_tracked(ROOT / "policies"), **_tracked(ROOT / "migrations")}
    expected["alembic.ini"] = (ROOT / "alembic.ini").read_bytes()
    assert expected.keys() >= {"policies/spaces.yaml", "migrations/env.py", "alembic.ini"}
    for name, content in expected.items():
        member = f"authz/_shipped/{name}"
        assert member in names, member
        assert wheel.read(member) == content, f"{member} differs from the repository's {name}"
    # Nothing but those: the shipped folder is a copy, not a second source.
    shipped_members = {n.removeprefix("authz/_shipped/") for n in names if "/_shipped/" in n}
    assert shipped_members == set(expected)


def test_the_wheel_ships_the_pages_their_assets_and_swagger_ui(wheel):
    names = set(wheel.namelist())
    for folder in ("api/templates", "api/static"):
        for name in _tracked(ROOT / folder):
            assert name in names, name
    assert {
        "api/templates/console/base.html",
        "api/static/console/console.js",
        "api/static/swagger-ui/swagger-ui-bundle.js",
    } <= names


def test_the_wheel_holds_no_tests_benchmarks_or_local_state(wheel):
    tops = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert tops == {"api", "authz", "cli", "models", "authz_service-0.1.0.dist-info"}


def test_a_checkout_uses_its_own_top_level_files():
    for name in SHIPPED:
        assert shipped(name) == ROOT / name
    assert load_settings(environ={}).policy_dir == str(ROOT / "policies")
    assert alembic_config(None).get_main_option("script_location") == str(ROOT / "migrations")


def test_an_installed_package_uses_the_copy_inside_it(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "authz"
    for name in ("policies", "migrations"):
        (package / "_shipped" / name).mkdir(parents=True)
    (package / "_shipped" / "alembic.ini").write_text("[alembic]\n")
    monkeypatch.setattr(config.resources, "files", lambda _name: package)
    for name in SHIPPED:
        assert shipped(name) == package / "_shipped" / name


def test_only_the_shipped_names_can_be_asked_for():
    with pytest.raises(ValueError, match="'tests' is not shipped"):
        shipped("tests")


def test_the_policy_dir_setting_points_to_a_reviewed_copy_elsewhere(tmp_path):
    copy = tmp_path / "reviewed"
    shutil.copytree(shipped("policies"), copy)
    spaces = copy / "spaces.yaml"
    spaces.write_text(
        spaces.read_text(encoding="utf-8").replace("My account (Mon compte)", "Reviewed label"),
        encoding="utf-8",
    )
    settings = load_settings(
        {"database_url": f"sqlite:///{tmp_path / 'authz.db'}"},
        environ={"AUTHZ_POLICY_DIR": str(copy)},
    )
    assert settings.policy_dir == str(copy)
    rt = build_runtime(settings)
    try:
        labels = {space.code: space.label for space in rt.policies.spaces}
    finally:
        close_runtime(rt)
    assert labels["my_account"] == "Reviewed label"
