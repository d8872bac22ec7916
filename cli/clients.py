"""`authz clients`: client applications and their API keys."""

from __future__ import annotations

import click

from authz.workflows import clients

from .common import runtime


@click.group("clients")
def group() -> None:
    """Client applications and their API keys."""


@group.command("create")
@click.argument("name")
def create(name: str) -> None:
    """Register client application NAME and print its API key, once."""
    with runtime() as rt, rt.sessions() as session:
        client, key = clients.create_client(session, rt, name)
    click.echo(f"Client application {client.name!r} created (key id {client.key_id}).")
    click.echo(
        "API key, shown only now: it is not stored, only its hash. Copy it to the "
        "client's secret store:",
        err=True,
    )
    click.echo(key)


@group.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke the API key of client application NAME, at once."""
    with runtime() as rt, rt.sessions() as session:
        client = clients.revoke_client(session, rt, name)
    click.echo(f"Client application {client.name!r} revoked: its key is refused from now on.")
