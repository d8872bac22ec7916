"""The `authz` command group: settings checked first, operator-actionable errors
printed as one line with exit code 1 (never a traceback)."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.exc import OperationalError

from authz.config import SettingError, load_settings, settings_table, unknown_variables
from authz.engine.policy import PolicyFileError
from authz.errors import DomainError


def _main_help() -> str:
    width = max(len(name) for name, _ in settings_table())
    table = "\n".join(f"  {name.ljust(width)}  {default}" for name, default in settings_table())
    return (
        "Authorization service: database, operator tasks, demo data and the HTTP server.\n\n"
        "Every command reads the same AUTHZ_* environment variables as the service "
        "(variable and default):\n\n"
        f"\b\n{table}"
    )


class _Cli(click.Group):
    """Turns the errors an operator can act on into one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:  # noqa: RET503 - ctx.exit() raises (NoReturn)
        try:
            return super().invoke(ctx)
        except DomainError as exc:
            message = exc.detail
        except PolicyFileError as exc:
            message = f"policy files: {exc}"
        except OperationalError as exc:
            message = f"database: {exc.orig}"
        except SettingError as exc:
            message = str(exc)
        click.echo(f"error: {message}", err=True)
        ctx.exit(1)


@click.group(cls=_Cli, help=_main_help())
def main() -> None:
    # Every command starts by checking every setting (one line per refusal) and
    # naming the AUTHZ_* variables that are not settings.
    for line in unknown_variables():
        click.echo(line, err=True)
    load_settings()
