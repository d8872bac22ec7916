"""`authz structures`: registering public structures in bulk."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from authz.errors import Invalid
from authz.workflows import structures

from .common import runtime


@click.group("structures")
def group() -> None:
    """Structures."""


@group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(file: Path) -> None:
    """Register the public structures listed in FILE, a UTF-8 CSV with the columns
    identifier_type, identifier_value, designation and optionally
    centrally_managed, principal_email. All or nothing: any invalid line means
    nothing is imported. Structures already registered are skipped."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"{file} is not UTF-8 text (byte {exc.start}).") from exc
    rows = structures.csv_data_rows(text)
    with (
        runtime() as rt,
        rt.sessions() as session,
        click.progressbar(length=rows, label="Importing", file=sys.stderr) as bar,
    ):
        report = structures.import_public_csv(session, rt, text, progress=bar.update)
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    click.echo(f"created: {report.created}, skipped (already registered): {report.skipped}")
    if report.errors:
        click.echo(f"Nothing was imported: {len(report.errors)} error(s).", err=True)
        click.get_current_context().exit(1)
