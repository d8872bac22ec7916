"""`authz decisions`: the decision log, read from the command line."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from authz import decision_log
from models import DECISION_APIS

from .common import OUTPUT_OPTION, runtime

_WHEN = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"])


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.replace(tzinfo=dt.UTC)


@click.command("decisions")
@click.option("--user", "user_id", type=int, help="The subject asked about.")
@click.option("--structure", "structure_id", type=int)
@click.option("--service", help="Service code.")
@click.option("--space", help="Space code.")
@click.option("--action")
@click.option("--result", type=click.Choice(["allowed", "denied"]))
@click.option("--client", "client_id", type=int, help="The client application that asked.")
@click.option("--api", type=click.Choice(DECISION_APIS))
@click.option("--since", type=_WHEN, help="From (inclusive, UTC): YYYY-MM-DD[THH:MM[:SS]].")
@click.option("--until", type=_WHEN, help="To (exclusive, UTC).")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@OUTPUT_OPTION
def command(
    result: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    fmt: str,
    output: Path | None,
    **chosen: Any,
) -> None:
    """The decisions recorded (AUTHZ_DECISION_LOG), newest first: JSON lines
    (one record per line, for a SIEM) or CSV."""
    filters = decision_log.Filters(
        **chosen,
        allowed=None if result is None else result == "allowed",
        since=_utc(since),
        until=_utc(until),
    )
    with runtime() as rt, rt.read_sessions() as session:
        records = decision_log.iter_records(session, filters)
        if fmt == "csv":
            chunks = decision_log.to_csv(records)
        else:
            chunks = (json.dumps(decision_log.as_dict(r), default=str) + "\n" for r in records)
        count = -1 if fmt == "csv" else 0
        if output is None:
            for chunk in chunks:
                click.echo(chunk, nl=False)
                count += 1
        else:
            with output.open("w", encoding="utf-8", newline="") as out:
                for chunk in chunks:
                    out.write(chunk)
                    count += 1
    click.echo(f"{count} record(s).", err=True)
