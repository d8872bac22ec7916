"""`authz mail`: the mail outbox."""

from __future__ import annotations

import click

from authz import mail

from .common import echo_delivery, runtime


@click.group("mail")
def group() -> None:
    """The mail outbox."""


@group.command("deliver")
def deliver() -> None:
    """Send the due mails of the outbox now (failures stay queued and are retried)."""
    with runtime() as rt:
        echo_delivery(mail.deliver_all_due(rt.sessions, rt.settings), rt.settings)
