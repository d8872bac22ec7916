"""`authz review` and `authz export`: the security team's report and exports."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from authz.review import exports, reports
from authz.runtime import Runtime

from .common import OUTPUT_OPTION, runtime, write


@click.command("review")
@click.option("--structure", "structure_id", type=int, help="One structure only.")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Also list every change of rights since this day (YYYY-MM-DD).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["html", "json"]), default="html", show_default=True
)
@OUTPUT_OPTION
def review(structure_id: int | None, since: Any, fmt: str, output: Path | None) -> None:
    """The review report: findings that need a human look (structures without a
    principal, inactive managers, expiring secrets, broad rights…), each with
    why it matters and the history entries behind it."""
    with runtime() as rt, rt.sessions() as session:
        report = reports.build_report(session, rt, structure_id, since.date() if since else None)
    if fmt == "html":
        # The web stack (api's template) only for the page: the JSON report,
        # the exports and the diff start a second sooner without it.
        from api.review_html import render_html  # noqa: PLC0415

        text = render_html(report)
    else:
        text = reports.report_json_text(reports.report_json(report))
    write(output, text)
    click.echo(f"{len(report.findings)} finding(s).", err=True)


@click.group("export")
def export_group() -> None:
    """Exports for the security team."""


def _rights_chunks(
    rt: Runtime,
    structure_id: int | None,
    fmt: str,
    progress: Callable[[int], None] | None = None,
) -> Iterator[str]:
    if fmt == "csv":
        yield from exports.rights_csv(
            exports.rights_rows(
                rt.read_sessions, rt, structure_id, progress=progress, csv_cells=True
            )
        )
        return
    yield "["
    rows = exports.effective_rights(rt.read_sessions, rt, structure_id, progress=progress)
    for n, row in enumerate(rows):
        yield ("," if n else "") + "\n" + json.dumps(row)
    yield "\n]\n"


@export_group.command("rights")
@click.option("--structure", "structure_id", type=int, help="One structure only.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write, with a progress bar (default: standard output).",
)
def export_rights(structure_id: int | None, fmt: str, output: Path | None) -> None:
    """The rights actually held now, one row per user, structure, scope and
    space: role, level, since, granted by, source (subscription or role default)."""
    with runtime() as rt, rt.sessions() as session:
        if output is None:
            for chunk in _rights_chunks(rt, structure_id, fmt):
                click.echo(chunk, nl=False)
            return
        scope = exports.export_scope(session, structure_id)
        with (
            output.open("w", encoding="utf-8", newline="") as out,
            click.progressbar(length=len(scope), label="Exporting", file=sys.stderr) as bar,
        ):
            for chunk in _rights_chunks(rt, structure_id, fmt, bar.update):
                out.write(chunk)
    click.echo(f"Written to {output}.", err=True)


@export_group.command("casbin")
@OUTPUT_OPTION
def export_casbin(output: Path | None) -> None:
    """The policy the engine runs (roles.yaml's p rows, levels.csv's p2 rows) in
    Casbin's CSV format."""
    with runtime() as rt:
        text = exports.casbin_policy_csv(rt)
    write(output, text)
