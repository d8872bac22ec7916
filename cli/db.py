"""`authz db`: the database schema."""

from __future__ import annotations

from pathlib import Path

import click

from authz import db
from authz.backup import backup_sqlite
from authz.errors import Invalid
from authz.review import policy_versions
from authz.review.fixtures import WorldError
from authz.runtime import sync_catalogue

from .common import runtime
from .policy import echo_tests


@click.group("db")
def group() -> None:
    """The database schema."""


@group.command("upgrade")
def upgrade() -> None:
    """Apply the pending migrations (idempotent), then copy policies/spaces.yaml
    into the database. Run it once per release, before the new instances start
    (a release step or an init container); several at once are safe: one
    migrates, the others wait for it."""

    def waiting() -> None:
        click.echo("Another process is migrating this database: waiting for it.", err=True)

    with runtime(migrated=False) as rt:
        before, after = db.upgrade(rt.engine, on_wait=waiting)
        try:
            first = policy_versions.store_first_version(rt)
        except WorldError as exc:
            raise Invalid(f"assertion file: {exc}; no policy version stored") from exc
        sync_catalogue(rt)
        head = db.code_chain().head
    if before == after and after != head:
        click.echo(
            f"Database at revision {after}, newer than this release's {head} and "
            "declared compatible with it: nothing to do."
        )
    elif before == after:
        click.echo(f"Database already at revision {after}.")
    else:
        click.echo(f"Database upgraded from {before or 'an empty schema'} to revision {after}.")
    if first is not None and first.outcome == "refused":
        if first.tests is not None:
            echo_tests(first.tests)
        raise Invalid(
            f"the policy files of {rt.settings.policy_dir} fail their assertion tests "
            "(`authz policy test`) or have none: no policy version stored; fix them and "
            "run again."
        )
    if first is not None and first.outcome == "applied":
        click.echo(
            f"Policy version {first.version} stored from {rt.settings.policy_dir} "
            f"(sha256 {first.digest}), its assertion tests passed."
        )
    click.echo("Space catalogue synchronised with the policy files.")


@group.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def backup(file: Path) -> None:
    """Copy the SQLite database into FILE (a new file) while the service runs,
    with SQLite's online backup API. To restore, stop the service and put FILE
    in the database's place (or point AUTHZ_DATABASE_URL at it). PostgreSQL:
    use pg_dump and pg_restore (docs/operations.md)."""
    with runtime() as rt:
        revision = backup_sqlite(rt.engine, file)
    click.echo(f"Database copied to {file} (at policy revision {revision}).")
