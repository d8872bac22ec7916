"""What the commands share: the Runtime of the AUTHZ_* settings, and the few
ways they print (tables, files, where mail goes)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import click

from authz import db, mail
from authz.config import Settings, load_settings
from authz.errors import Unavailable
from authz.runtime import Runtime, build_runtime, close_runtime, sync_catalogue


def require_usable_schema(rt: Runtime) -> None:
    """Raises Unavailable `schema_outdated` (empty or older schema) or
    `schema_incompatible` (a newer schema not declared compatible with this
    release); a newer compatible schema passes (rolling deploys)."""
    status = db.schema_status(rt.engine)
    if not status.usable:
        raise Unavailable(status.detail, code=status.code)


@contextmanager
def runtime(*, migrated: bool = True) -> Iterator[Runtime]:
    """The Runtime of the AUTHZ_* settings, its engine disposed at the end. With
    `migrated`, first require a schema this release runs on and copy the space
    catalogue in, as the service does at start-up (raises Unavailable
    `schema_outdated` or `schema_incompatible`)."""
    rt = build_runtime(load_settings())
    try:
        if migrated:
            require_usable_schema(rt)
            sync_catalogue(rt)
        yield rt
    finally:
        close_runtime(rt)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the headers, a rule, the rows; columns left-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def write(output: Path | None, text: str) -> None:
    """Write `text` to OUTPUT (UTF-8), or to standard output."""
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"Written to {output}.", err=True)


def mail_destination(settings: Settings) -> str:
    """Where delivered mail goes, in words."""
    if settings.smtp_host:
        return f"sent through SMTP {settings.smtp_host}:{settings.smtp_port}"
    return f"written as .eml files to {settings.effective_mail_dir.resolve()}"


def echo_delivery(report: mail.DeliveryReport, settings: Settings) -> None:
    click.echo(
        f"mail: {report.sent} sent ({mail_destination(settings)}), "
        f"{report.failed} failed (kept in the outbox, retried later)"
    )


OUTPUT_OPTION = click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: standard output).",
)
