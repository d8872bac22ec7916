"""`authz demo`: the demo structures and accounts."""

from __future__ import annotations

import click

from authz import demo

from .common import mail_destination, runtime, table


@click.command("demo")
def command() -> None:
    """Load the demo structures and accounts (does nothing if already loaded)."""
    with runtime() as rt, rt.sessions() as session:
        report = demo.load_demo(session, rt)
    click.echo(
        "Demo data loaded." if report.loaded else "Demo data already loaded: nothing changed."
    )
    click.echo("\nLog-ins:\n")
    click.echo(
        table(
            ("login email", "password", "role"),
            [(login.email, login.password or "-", login.role) for login in report.logins],
        )
    )
    click.echo(
        "(password '-': no password log-in; a pending account first activates "
        "through its mailed link)"
    )
    click.echo("\nStructures:\n")
    click.echo(
        table(
            ("designation", "identifier", "kind", "services"),
            [
                (s.designation, s.identifier, s.kind, ", ".join(s.services))
                for s in report.structures
            ],
        )
    )
    if report.loaded:
        click.echo(
            "\nThe pending account's activation mail is in the outbox: the running "
            f"service delivers it, or run `authz mail deliver`; it will be "
            f"{mail_destination(rt.settings)}."
        )
