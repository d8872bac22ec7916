"""`authz policy`: the policy files' assertion tests, decision explanations
and change review."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from authz.config import load_settings
from authz.engine.policy import write_policy_files
from authz.errors import Invalid
from authz.review import policy_versions, policytest
from authz.review.fixtures import WorldError
from authz.runtime import Runtime
from authz.workflows import references

from .common import runtime, table


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
    echo_tests(report)
    if not report.passed:
        click.get_current_context().exit(1)


def echo_tests(report: policytest.RunReport) -> None:
    """PASS or FAIL per assertion file, each failure explained, then coverage."""
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
            changes = policytest.diff_database(
                old_dir, new_dir, rt.decider.db_engine, rt.decider.snapshots
            )
    for n in range(0, len(changes), 10_000):  # echo checks the terminal per call
        click.echo("\n".join(str(change) for change in changes[n : n + 10_000]))
    click.echo(f"{len(changes)} decision(s) change.", err=True)


# --- policy versions: applied live, versioned and audited ----------------------

ACTOR_OPTION = click.option(
    "--actor",
    help="Who applies, for the record  [default: the operating-system user]",
)


def _apply(what: str, apply: Callable[[Runtime], policy_versions.Applied]) -> None:
    """Run `apply` on the Runtime of the settings and say what it did; exits 1
    when the set was refused (an assertion file that does not read included)."""
    with runtime() as rt:
        try:
            applied = apply(rt)
        except WorldError as exc:
            raise Invalid(f"assertion file: {exc}; nothing changed") from exc
    _echo_applied(applied, what)


def _echo_applied(applied: policy_versions.Applied, what: str) -> None:
    """What apply or rollback did; exits 1 when the set was refused."""
    if applied.tests is not None:
        echo_tests(applied.tests)
    if applied.outcome == "refused":
        reason = (
            "it has no assertion tests (tests/*.yaml)"
            if applied.tests is not None and not applied.tests.files
            else "its assertion tests fail"
        )
        click.echo(f"error: {what} refused: {reason}; nothing changed.", err=True)
        click.get_current_context().exit(1)
    elif applied.outcome == "unchanged":
        click.echo(
            f"Policy version {applied.version} in force has the same files "
            f"(sha256 {applied.digest}): nothing changed."
        )
    else:
        for change in applied.changes:
            click.echo(str(change))
        click.echo(
            f"Policy version {applied.version} applied (sha256 {applied.digest}): every "
            f"worker decides with it from revision {applied.revision} on; "
            f"{len(applied.changes)} decision(s) change."
        )


@group.command("apply")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@ACTOR_OPTION
def apply(directory: Path, actor: str | None) -> None:
    """Apply the policy files of DIRECTORY to the running service, without a
    restart. Their assertion tests (DIRECTORY/tests/*.yaml) run first: if any
    fails, or there is none, nothing changes (exit 1). Otherwise the set is
    stored as a new policy version (who, when, sha256, the files, the decisions
    it changes on this database) and every worker of every instance decides
    with it from the revision it is applied at."""
    _apply(
        f"The policy set of {directory}",
        lambda rt: policy_versions.apply_directory(rt, directory, actor=actor),
    )


@group.command("rollback")
@click.argument("version", type=click.IntRange(min=1))
@ACTOR_OPTION
def rollback(version: int, actor: str | None) -> None:
    """Apply stored policy VERSION again, as a new version, after running its
    assertion tests (as `authz policy apply`)."""
    _apply(
        f"Policy version {version}", lambda rt: policy_versions.rollback(rt, version, actor=actor)
    )


@group.command("history")
def history() -> None:
    """The stored policy versions, newest first: when, who, what applied it, its
    sha256, the revision it took effect at and how many decisions it changed.
    The one in force is marked *."""
    with runtime() as rt, rt.read_sessions() as session:
        versions = policy_versions.history(session)
        current = policy_versions.in_force(session)
    if not versions:
        click.echo("No policy version stored: `authz db upgrade` stores the first.")
        return
    click.echo(
        table(
            ("version", "applied at", "by", "sha256", "revision", "changes", "source"),
            [
                (
                    f"{v.version}{' *' if v.version == current else ''}",
                    policy_versions.applied_at(v),
                    v.applied_by,
                    v.digest[:12],
                    str(v.revision),
                    str(v.changes.get("count", 0)),
                    v.source,
                )
                for v in versions
            ],
        )
    )


@group.command("show")
@click.argument("version", type=click.IntRange(min=1))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def show(version: int, directory: Path) -> None:
    """Write the files of stored policy VERSION into DIRECTORY (new or empty), to
    read them, diff them (`authz policy diff`) or edit and apply them."""
    if directory.exists() and any(directory.iterdir()):
        raise Invalid(f"{directory} is not empty.")
    with runtime() as rt, rt.read_sessions() as session:
        files = policy_versions.stored_files(session, version)
    write_policy_files(files, directory)
    click.echo(f"Policy version {version}: {len(files)} file(s) written to {directory}.")
