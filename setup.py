"""Ships the repository's policies/, migrations/ and alembic.ini inside the wheel.

Everything else about the distribution is declared in pyproject.toml. This file
only adds one build step: the three top-level entries below are copied into
the built package as `authz/_shipped/<name>`, so that an installed wheel finds
its default policies, its migrations and its Alembic configuration without the
source tree (authz/config.py `shipped()` looks there first). The repository
keeps a single copy of each, at the top level where reviewers read them;
editable installs (`make venv`) use those directly and get no copy.
MANIFEST.in puts the same entries in the sdist, which wheels may be built from.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# Keep in step with authz/config.py SHIPPED and MANIFEST.in.
SHIPPED = ("policies", "migrations", "alembic.ini")
TARGET = Path("authz") / "_shipped"


class BuildPyWithShippedFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the checkout's own files are used in place
        target = Path(self.build_lib) / TARGET
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for name in SHIPPED:
            source = HERE / name
            if source.is_dir():
                shutil.copytree(
                    source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            else:
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildPyWithShippedFiles})
