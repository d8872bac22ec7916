"""The layers hold (docs/architecture.md): imports point one way, api → authz →
models (the command line, cli/, may use api and authz; nothing imports it), the
web framework stays in api/ (and cli/, which serves api), no module reaches into
another's private names, and no test module imports another. Read from the source
with `ast`, every import counted (at the top of a module or inside a function), so
a lazy import cannot slip through."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("api", "authz", "cli", "models", "tests", "bench", "migrations")
# Web framework and presentation: api/ only.
WEB = ("flask", "flask_smorest", "werkzeug", "marshmallow", "jinja2")


@dataclass(frozen=True)
class Import:
    module: str  # the module that imports (dotted, e.g. authz.engine.checks)
    line: int
    target: str  # what it imports from, resolved to an absolute dotted name
    names: tuple[str, ...]  # the names of `from target import names` (empty: `import target`)

    def where(self) -> str:
        return f"{self.module.replace('.', '/')}.py:{self.line}"

    def reaches(self, prefixes: tuple[str, ...]) -> bool:
        """Whether it imports one of `prefixes` or something under it; a name of
        `from target import name` may be a module (`from .. import mail`)."""
        dotted = [self.target, *(f"{self.target}.{n}" for n in self.names)]
        return any(d == p or d.startswith(p + ".") for d in dotted for p in prefixes)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from … import` names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(top: str) -> Iterator[Import]:
    for path in sorted((ROOT / top).rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module, node.lineno, alias.name, ())
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, path.name == "__init__.py", node)
                yield Import(module, node.lineno, target, tuple(a.name for a in node.names))


def _top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


def _offending(tops: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{i.where()} imports {i.target}"
        for top in tops
        for i in imports(top)
        if i.reaches(forbidden)
    )


def test_the_domain_and_the_models_do_not_import_the_web_framework():
    assert _offending(("authz", "models"), WEB) == []


def test_models_import_neither_the_domain_nor_the_api():
    assert _offending(("models",), ("authz", "api")) == []


def test_the_domain_does_not_import_the_api():
    assert _offending(("authz",), ("api",)) == []


def test_nothing_but_the_tests_imports_the_command_line():
    """cli/ is an interface like api/: it calls them, they never call it."""
    assert _offending(("api", "authz", "models", "bench", "migrations"), ("cli",)) == []


@pytest.mark.parametrize(
    "package, below",
    [
        # The engine decides; it does not run workflows nor the review tools.
        ("authz.engine", ("authz.workflows", "authz.review")),
        # Workflows do not depend on the security team's tools.
        ("authz.workflows", ("authz.review",)),
    ],
)
def test_inside_the_domain_imports_point_one_way(package, below):
    found = sorted(
        f"{i.where()} imports {i.target}"
        for i in imports("authz")
        if (i.module == package or i.module.startswith(package + ".")) and i.reaches(below)
    )
    assert found == []


def test_no_module_imports_a_private_name_of_another():
    """`from x import _y` across modules couples them to each other's insides:
    a helper used elsewhere is public (and, if shared widely, in a module of
    its own)."""
    found = sorted(
        f"{i.where()} imports {name} from {i.target}"
        for top in PROJECT
        for i in imports(top)
        if _top(i.target) in PROJECT
        for name in i.names
        if name.startswith("_") and not name.startswith("__")
    )
    assert found == []


def _is_test_module(dotted: str) -> bool:
    """Whether `dotted` names a test module or a conftest.py of tests/."""
    path = ROOT.joinpath(*dotted.split(".")).with_suffix(".py")
    return (
        dotted.startswith("tests.")
        and path.is_file()
        and (path.name.startswith("test_") or path.name == "conftest.py")
    )


def test_no_test_module_imports_another_test_module_or_a_conftest():
    """Tests share helpers through tests/support/ and fixtures through the
    conftest.py files pytest loads itself: a test module that imports another
    (or a conftest) depends on its insides, and pytest collects the fixtures it
    drags along twice."""
    test_imports = list(imports("tests"))
    assert any(i.reaches(("tests.support",)) for i in test_imports)  # the scan sees them
    found = sorted(
        f"{i.where()} imports {dotted}"
        for i in test_imports
        for dotted in (i.target, *(f"{i.target}.{n}" for n in i.names))
        if _is_test_module(dotted)
    )
    assert found == []


def test_the_checks_see_the_imports():
    """The scan is not vacuous: it finds the imports the layers are made of."""
    authz_imports = list(imports("authz"))
    assert any(
        i.module == "authz.engine.decisions" and i.reaches(("authz.roles",)) for i in authz_imports
    )
    assert any(
        i.module == "authz.workflows.records" and i.reaches(("authz.mail",))
        for i in authz_imports  # a lazy import, inside a function
    )
    assert any(i.reaches(("flask",)) for i in imports("api"))
    assert any(i.module == "cli.review" and i.reaches(("api.review_html",)) for i in imports("cli"))
    assert any(i.target == "models.base" and "one_of" in i.names for i in imports("models"))
