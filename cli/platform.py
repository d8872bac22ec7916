"""`authz operator` and `authz reviewer`: the two platform roles, given only
from the command line. One command, made twice with each role's words."""

from __future__ import annotations

from dataclasses import dataclass

import click

from authz.workflows import operators

from .common import mail_destination, runtime


@dataclass(frozen=True)
class PlatformRole:
    role: str  # models.PLATFORM_ROLES
    group: str  # the command group's name
    group_help: str
    name: str  # "Give EMAIL the <name> role", "... is now a <name>."
    noun: str  # "Created the <noun> account ..."
    first_name: str  # defaults of a new account's names
    last_name: str
    note: str = ""  # said in the command's help, after what it does


OPERATOR = PlatformRole(
    role=operators.OPERATOR,
    group="operator",
    group_help="Platform operators.",
    name="platform operator",
    noun="operator",
    first_name="Platform",
    last_name="Operator",
)
REVIEWER = PlatformRole(
    role=operators.REVIEWER,
    group="reviewer",
    group_help="Security reviewers (they read exports and review reports).",
    name="security reviewer",
    noun="security reviewer",
    first_name="Security",
    last_name="Reviewer",
    note=" An operator cannot also be a reviewer.",
)


def role_group(spec: PlatformRole) -> click.Group:
    """The command group of one platform role, with its `create` command."""

    @click.group(spec.group, help=spec.group_help)
    def group() -> None:
        pass

    @group.command(
        "create",
        help=f"Give EMAIL the {spec.name} role; "
        "create a pending account (with an activation mail) if no account uses that "
        f"login.{spec.note}",
    )
    @click.argument("email")
    @click.option("--first-name", default=spec.first_name, show_default=True)
    @click.option("--last-name", default=spec.last_name, show_default=True)
    def create(email: str, first_name: str, last_name: str) -> None:
        with runtime() as rt, rt.sessions() as session:
            user, outcome = operators.create_operator(
                session, rt, email, first_name=first_name, last_name=last_name, role=spec.role
            )
        if outcome == "created":
            click.echo(f"Created the {spec.noun} account {user.login_email} (pending activation).")
            click.echo(
                "Its activation mail is in the outbox: the running service delivers it, "
                f"or run `authz mail deliver`; it will be {mail_destination(rt.settings)}."
            )
        elif outcome == "promoted":
            click.echo(
                f"The existing account {user.login_email} ({user.status}) is now a {spec.name}."
            )
        else:
            click.echo(f"{user.login_email} is already a {spec.name}: nothing changed.")

    return group


operator_group = role_group(OPERATOR)
reviewer_group = role_group(REVIEWER)
