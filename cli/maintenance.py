"""`authz maintenance`: periodic clean-up, from cron."""

from __future__ import annotations

import click

from authz import mail
from authz.workflows import maintenance

from .common import echo_delivery, runtime


@click.command("maintenance")
def command() -> None:
    """Delete dead tokens, throttle rows, old change-log rows and decision log
    records past AUTHZ_DECISION_LOG_RETENTION_DAYS, close accounts
    deactivated more than 60 days ago, then deliver due mail. Safe to run from
    cron, on several hosts at once."""
    with runtime() as rt:
        with rt.sessions() as session:
            counts = maintenance.run_maintenance(session, rt)
        closed = counts.pop("closed_accounts")
        click.echo(
            "deleted: "
            + ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in counts.items())
        )
        click.echo(f"closed: {closed} account(s) deactivated more than 60 days ago")
        echo_delivery(mail.deliver_all_due(rt.sessions, rt.settings), rt.settings)
