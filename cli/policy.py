"""`authz policy`: the policy files' assertion tests, decision explanations
and change review."""

from __future__ import annotations

from pathlib import Path

import click

from authz.config import load_settings
from authz.errors import Invalid
from authz.review import policytest
from authz.review.fixtures import WorldError
from authz.workflows import references

from .common import runtime


@click.group("policy")
def group() -> None:
    """The policy files: assertion tests, decision explanations, change review."""


@group.command("test")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def test(files: tuple[Path, ...]) -> None:
    """Run assertion FILES (default: every policies/tests/*.yaml) against the
    configured policy files, each in a throwaway database. Prints PASS or FAIL
    per file, each failure with the explanation of the actual decision, then
    the policy rows no allow assertion exercised. Exits 1 on any failure."""
    policy_dir = load_settings().policy_dir
    try:
        report = policytest.run_files(files or policytest.default_files(policy_dir), policy_dir)
    except WorldError as exc:
        raise Invalid(f"assertion file: {exc}") from exc
    for result in report.files:
        click.echo(
            f"{'PASS' if result.passed else 'FAIL'}  {result.path} "
            f"({result.checked} assertion(s), {len(result.failures)} failed)"
        )
        for failure in result.failures:
            click.echo(f"  - {failure.what}: expected {failure.expected}, got {failure.actual}")
            click.echo("    " + failure.explanation.replace("\n", "\n    "))
    coverage = report.coverage
    unexercised = [f"p2, {', '.join(row)}  (levels.csv)" for row in coverage.unexercised_levels] + [
        f"p, {', '.join(row)}  (roles.yaml)" for row in coverage.unexercised_roles
    ]
    click.echo(
        f"coverage: {len(coverage.level_rows) - len(coverage.unexercised_levels)}/"
        f"{len(coverage.level_rows)} levels.csv rows, "
        f"{len(coverage.role_rows) - len(coverage.unexercised_roles)}/"
        f"{len(coverage.role_rows)} roles.yaml rows exercised by an allow assertion"
    )
    for line in unexercised:
        click.echo(f"  not exercised: {line}")
    if not report.passed:
        click.get_current_context().exit(1)


@group.command("explain")
@click.argument("user")
@click.argument("structure")
@click.argument("space")
@click.argument("action")
@click.option("--service", help="Service code, for a question about one service.")
def explain(user: str, structure: str, space: str, action: str, service: str | None) -> None:
    """Explain the decision on USER (id or login email) doing ACTION in SPACE
    of STRUCTURE (id or identifier value) on the configured database: the chain
    that allowed it, or the first missing link that denied it. SPACE "-" asks
    a management action on the structure."""
    with runtime() as rt:
        with rt.read_sessions() as session:
            user_id = references.user_id(session, user)
            structure_id = references.structure_id(session, structure)
        click.echo(
            policytest.explain(
                rt, user_id, structure_id, None if space == "-" else space, action, service
            )
        )


@group.command("diff")
@click.argument("old_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("new_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--fixture",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Evaluate on this assertion file's world instead of the configured database.",
)
def diff(old_dir: Path, new_dir: Path, fixture: Path | None) -> None:
    """List every decision that the policy files of NEW_DIR take differently
    from those of OLD_DIR, on the configured database (its members, on their
    structures) or on a fixture world."""
    if fixture is not None:
        try:
            world = policytest.read_assertions(fixture).world
        except WorldError as exc:
            raise Invalid(f"assertion file: {exc}") from exc
        changes = policytest.diff_world(old_dir, new_dir, world)
    else:
        with runtime() as rt:
            changes = policytest.diff_database(old_dir, new_dir, rt.decider.db_engine)
    for change in changes:
        click.echo(str(change))
    click.echo(f"{len(changes)} decision(s) change.", err=True)
