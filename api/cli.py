"""The command line `authz`: an interface like HTTP, calling the authz workflows.

Every command reads the AUTHZ_* settings with load_settings() and builds its
Runtime with build_runtime(), as the service does. Domain errors are printed as
`error: <detail>` with exit code 1, never as a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from alembic.runtime.migration import MigrationContext
from flask import Flask
from gunicorn.app.base import BaseApplication
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from authz import db, demo, mail
from authz.config import Settings, load_settings, settings_table
from authz.engine.policy import PolicyFileError
from authz.errors import DomainError, Invalid, NotFound, Unavailable
from authz.review import exports, policytest, reports
from authz.review.fixtures import WorldError
from authz.runtime import Runtime, build_runtime, close_runtime, sync_catalogue
from authz.workflows import clients, maintenance, operators, structures
from models import Structure, User

from .review_html import render_html

# Method and path only: a query string may carry a token (activation links).
ACCESS_LOG_FORMAT = (
    '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'
)
# Mails sent per delivery pass (authz.mail.deliver_due's batch).
MAIL_BATCH = 50


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

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DomainError as exc:
            message = exc.detail
        except PolicyFileError as exc:
            message = f"policy files: {exc}"
        except OperationalError as exc:
            message = f"database: {exc.orig}"
        click.echo(f"error: {message}", err=True)
        ctx.exit(1)


@click.group(cls=_Cli, help=_main_help())
def main() -> None:
    pass


def _require_current_schema(rt: Runtime) -> None:
    """Raises Unavailable `schema_outdated` unless the schema is at the latest migration."""
    if not db.schema_is_current(rt.engine):
        raise Unavailable(
            "The database schema is not at the latest migration: run `authz db upgrade` first.",
            code="schema_outdated",
        )


@contextmanager
def _runtime(*, migrated: bool = True) -> Iterator[Runtime]:
    """The Runtime of the AUTHZ_* settings, its engine disposed at the end. With
    `migrated`, first require a current schema and copy the space catalogue in,
    as the service does at start-up (raises Unavailable `schema_outdated`)."""
    rt = build_runtime(load_settings())
    try:
        if migrated:
            _require_current_schema(rt)
            sync_catalogue(rt)
        yield rt
    finally:
        close_runtime(rt)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines
    )


def _mail_destination(settings: Settings) -> str:
    if settings.smtp_host:
        return f"sent through SMTP {settings.smtp_host}:{settings.smtp_port}"
    return f"written as .eml files to {settings.effective_mail_dir.resolve()}"


def _deliver_due_mail(rt: Runtime) -> mail.DeliveryReport:
    """Delivery passes until no due mail is left; failed mails stay pending and
    are retried later with back-off."""
    transport = mail.transport_from_settings(rt.settings)
    sent = failed = 0
    while True:
        report = mail.deliver_due(
            rt.sessions,
            transport,
            mail_from=rt.settings.mail_from,
            limit=MAIL_BATCH,
            base_delay=rt.settings.mail_retry_base_seconds,
            max_delay=rt.settings.mail_retry_max_seconds,
        )
        sent, failed = sent + report.sent, failed + report.failed
        if report.sent + report.failed < MAIL_BATCH:
            return mail.DeliveryReport(sent=sent, failed=failed)


def _echo_delivery(report: mail.DeliveryReport, settings: Settings) -> None:
    click.echo(
        f"mail: {report.sent} sent ({_mail_destination(settings)}), "
        f"{report.failed} failed (kept in the outbox, retried later)"
    )


# --- authz db ---------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """The database schema."""


def _revision(rt: Runtime) -> str | None:
    with rt.engine.connect() as conn:
        return ", ".join(MigrationContext.configure(conn).get_current_heads()) or None


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Apply the pending migrations (idempotent), then copy policies/spaces.yaml
    into the database."""
    with _runtime(migrated=False) as rt:
        before = _revision(rt)
        db.upgrade(rt.engine)
        sync_catalogue(rt)
        after = _revision(rt)
    if before == after:
        click.echo(f"Database already at revision {after}.")
    else:
        click.echo(f"Database upgraded from {before or 'an empty schema'} to revision {after}.")
    click.echo("Space catalogue synchronised with the policy files.")


# --- authz operator ---------------------------------------------------------


@main.group("operator")
def operator_group() -> None:
    """Platform operators."""


@operator_group.command("create")
@click.argument("email")
@click.option("--first-name", default="Platform", show_default=True)
@click.option("--last-name", default="Operator", show_default=True)
def operator_create(email: str, first_name: str, last_name: str) -> None:
    """Give EMAIL the platform operator role; create a pending account (with an
    activation mail) if no account uses that login."""
    with _runtime() as rt, rt.sessions() as session:
        user, outcome = operators.create_operator(
            session, rt, email, first_name=first_name, last_name=last_name
        )
    if outcome == "created":
        click.echo(f"Created the operator account {user.login_email} (pending activation).")
        click.echo(
            "Its activation mail is in the outbox: the running service delivers it, "
            "or run `authz mail deliver`; it will be "
            f"{_mail_destination(rt.settings)}."
        )
    elif outcome == "promoted":
        click.echo(
            f"The existing account {user.login_email} ({user.status}) is now a platform operator."
        )
    else:
        click.echo(f"{user.login_email} is already a platform operator: nothing changed.")


# --- authz clients ----------------------------------------------------------


@main.group("clients")
def clients_group() -> None:
    """Client applications and their API keys."""


@clients_group.command("create")
@click.argument("name")
def clients_create(name: str) -> None:
    """Register client application NAME and print its API key, once."""
    with _runtime() as rt, rt.sessions() as session:
        client, key = clients.create_client(session, rt, name)
    click.echo(f"Client application {client.name!r} created (key id {client.key_id}).")
    click.echo(
        "API key, shown only now: it is not stored, only its hash. Copy it to the "
        "client's secret store:",
        err=True,
    )
    click.echo(key)


@clients_group.command("revoke")
@click.argument("name")
def clients_revoke(name: str) -> None:
    """Revoke the API key of client application NAME, at once."""
    with _runtime() as rt, rt.sessions() as session:
        client = clients.revoke_client(session, rt, name)
    click.echo(f"Client application {client.name!r} revoked: its key is refused from now on.")


# --- authz structures -------------------------------------------------------


@main.group("structures")
def structures_group() -> None:
    """Structures."""


def _count_rows(text: str) -> int:
    """Data rows of a CSV text (blank lines are not rows). Raises Invalid if the
    text is not CSV."""
    try:
        return max(sum(1 for row in csv.reader(io.StringIO(text)) if row) - 1, 0)
    except csv.Error as exc:
        raise Invalid(f"not a readable CSV file: {exc}") from exc


@structures_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def structures_import(file: Path) -> None:
    """Register the public structures listed in FILE, a UTF-8 CSV with the columns
    identifier_type, identifier_value, designation and optionally
    centrally_managed, principal_email. All or nothing: any invalid line means
    nothing is imported. Structures already registered are skipped."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"{file} is not UTF-8 text (byte {exc.start}).") from exc
    rows = _count_rows(text)
    with (
        _runtime() as rt,
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


# --- authz demo -------------------------------------------------------------


@main.command("demo")
def demo_command() -> None:
    """Load the demo structures and accounts (does nothing if already loaded)."""
    with _runtime() as rt, rt.sessions() as session:
        report = demo.load_demo(session, rt)
    click.echo(
        "Demo data loaded." if report.loaded else "Demo data already loaded: nothing changed."
    )
    click.echo("\nLog-ins:\n")
    click.echo(
        _table(
            ("login email", "password", "role"),
            [(l.email, l.password or "-", l.role) for l in report.logins],
        )
    )
    click.echo(
        "(password '-': no password log-in; a pending account first activates "
        "through its mailed link)"
    )
    click.echo("\nStructures:\n")
    click.echo(
        _table(
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
            f"{_mail_destination(rt.settings)}."
        )


# --- authz serve ------------------------------------------------------------


class ServiceApplication(BaseApplication):
    """gunicorn running api.create_app(). The app is built in each worker, never
    in the master (no preload), so that each worker starts its own mail sender
    thread and database pool."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        from api import create_app

        return create_app()


@main.command("serve")
@click.option(
    "--bind",
    default="127.0.0.1:8000",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on.",
)
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(min=1), help="Worker processes."
)
@click.option(
    "--threads",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Threads per worker (gthread: keep-alive connections, and a slow "
    "request does not hold the whole worker).",
)
def serve(bind: str, workers: int, threads: int) -> None:
    """Serve the HTTP API with gunicorn (access log on stdout). Refuses to start
    unless the database schema is current."""
    with _runtime() as rt:
        settings = rt.settings
    ServiceApplication(
        {
            "bind": bind,
            "workers": workers,
            "preload_app": False,
            "proc_name": "authz",
            "worker_class": "api.gunicorn_worker.ProblemThreadWorker",  # gthread, problems
            "threads": threads,
            "keepalive": 5,
            # No runtime control socket: it is not needed, and two servers would share it.
            "control_socket_disable": True,
            "accesslog": "-",
            "errorlog": "-",
            "access_log_format": ACCESS_LOG_FORMAT,
            "loglevel": settings.log_level.lower(),
        }
    ).run()


# --- authz mail -------------------------------------------------------------


@main.group("mail")
def mail_group() -> None:
    """The mail outbox."""


@mail_group.command("deliver")
def mail_deliver() -> None:
    """Send the due mails of the outbox now (failures stay queued and are retried)."""
    with _runtime() as rt:
        _echo_delivery(_deliver_due_mail(rt), rt.settings)


# --- authz maintenance ------------------------------------------------------


@main.command("maintenance")
def maintenance_command() -> None:
    """Delete dead tokens, throttle rows and old change-log rows, close accounts
    deactivated more than 60 days ago, then deliver due mail. Safe to run from
    cron, on several hosts at once."""
    with _runtime() as rt:
        with rt.sessions() as session:
            counts = maintenance.run_maintenance(session, rt)
        closed = counts.pop("closed_accounts")
        click.echo(
            "deleted: "
            + ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in counts.items())
        )
        click.echo(f"closed: {closed} account(s) deactivated more than 60 days ago")
        _echo_delivery(_deliver_due_mail(rt), rt.settings)


# --- authz reviewer, review, export (security team) ----------------------------


@main.group("reviewer")
def reviewer_group() -> None:
    """Security reviewers (they read exports and review reports)."""


@reviewer_group.command("create")
@click.argument("email")
@click.option("--first-name", default="Security", show_default=True)
@click.option("--last-name", default="Reviewer", show_default=True)
def reviewer_create(email: str, first_name: str, last_name: str) -> None:
    """Give EMAIL the security reviewer role; create a pending account (with an
    activation mail) if no account uses that login. An operator cannot also be
    a reviewer."""
    with _runtime() as rt, rt.sessions() as session:
        user, outcome = operators.create_operator(
            session, rt, email, first_name=first_name, last_name=last_name, role=operators.REVIEWER
        )
    if outcome == "created":
        click.echo(
            f"Created the security reviewer account {user.login_email} (pending activation)."
        )
        click.echo(
            "Its activation mail is in the outbox: the running service delivers it, "
            "or run `authz mail deliver`."
        )
    elif outcome == "promoted":
        click.echo(
            f"The existing account {user.login_email} ({user.status}) is now a security reviewer."
        )
    else:
        click.echo(f"{user.login_email} is already a security reviewer: nothing changed.")


def _write(output: Path | None, text: str) -> None:
    """Write `text` to OUTPUT (UTF-8), or to standard output."""
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"Written to {output}.", err=True)


@main.command("review")
@click.option("--structure", "structure_id", type=int, help="One structure only.")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Also list every change of rights since this day (YYYY-MM-DD).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["html", "json"]), default="html", show_default=True
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: standard output).",
)
def review_command(structure_id: int | None, since: Any, fmt: str, output: Path | None) -> None:
    """The review report: findings that need a human look (structures without a
    principal, inactive managers, expiring secrets, broad rights…), each with
    why it matters and the history entries behind it."""
    with _runtime() as rt, rt.sessions() as session:
        report = reports.build_report(session, rt, structure_id, since.date() if since else None)
    text = (
        render_html(report)
        if fmt == "html"
        else json.dumps(reports.report_json(report), indent=2) + "\n"
    )
    _write(output, text)
    click.echo(f"{len(report.findings)} finding(s).", err=True)


@main.group("export")
def export_group() -> None:
    """Exports for the security team."""


def _rights_chunks(rows: Iterator[dict], fmt: str) -> Iterator[str]:
    if fmt == "csv":
        yield from exports.rights_csv(rows)
        return
    yield "["
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
    with _runtime() as rt, rt.sessions() as session:
        if output is None:
            for chunk in _rights_chunks(
                exports.effective_rights(rt.read_sessions, rt, structure_id), fmt
            ):
                click.echo(chunk, nl=False)
            return
        scope = exports.export_scope(session, structure_id)
        with (
            output.open("w", encoding="utf-8", newline="") as out,
            click.progressbar(length=len(scope), label="Exporting", file=sys.stderr) as bar,
        ):
            rows = exports.effective_rights(rt.read_sessions, rt, structure_id, progress=bar.update)
            for chunk in _rights_chunks(rows, fmt):
                out.write(chunk)
    click.echo(f"Written to {output}.", err=True)


@export_group.command("casbin")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: standard output).",
)
def export_casbin(output: Path | None) -> None:
    """The policy the engine runs (roles.yaml's p rows, levels.csv's p2 rows) in
    Casbin's CSV format."""
    with _runtime() as rt:
        text = exports.casbin_policy_csv(rt)
    _write(output, text)


# --- authz policy (tests as data, explanations, diffs) ------------------------


@main.group("policy")
def policy_group() -> None:
    """The policy files: assertion tests, decision explanations, change review."""


@policy_group.command("test")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def policy_test(files: tuple[Path, ...]) -> None:
    """Run assertion FILES (default: every policies/tests/*.yaml) against the
    configured policy files, each in a throwaway database. Prints PASS or FAIL
    per file, each failure with the explanation of the actual decision, then
    the policy rows no allow assertion exercised. Exits 1 on any failure."""
    policy_dir = load_settings().policy_dir
    try:
        report = policytest.run_files(files or policytest.default_files(policy_dir), policy_dir)
    except WorldError as exc:
        raise Invalid(f"assertion file: {exc}") from exc
    for result in report.files:
        click.echo(
            f"{'PASS' if result.passed else 'FAIL'}  {result.path} "
            f"({result.checked} assertion(s), {len(result.failures)} failed)"
        )
        for failure in result.failures:
            click.echo(f"  - {failure.what}: expected {failure.expected}, got {failure.actual}")
            click.echo("    " + failure.explanation.replace("\n", "\n    "))
    coverage = report.coverage
    unexercised = [f"p2, {', '.join(row)}  (levels.csv)" for row in coverage.unexercised_levels] + [
        f"p, {', '.join(row)}  (roles.yaml)" for row in coverage.unexercised_roles
    ]
    click.echo(
        f"coverage: {len(coverage.level_rows) - len(coverage.unexercised_levels)}/"
        f"{len(coverage.level_rows)} levels.csv rows, "
        f"{len(coverage.role_rows) - len(coverage.unexercised_roles)}/"
        f"{len(coverage.role_rows)} roles.yaml rows exercised by an allow assertion"
    )
    for line in unexercised:
        click.echo(f"  not exercised: {line}")
    if not report.passed:
        click.get_current_context().exit(1)


def _user_id(session: Session, value: str) -> int:
    """A user given by id or login email. Raises NotFound."""
    found = (
        session.get(User, int(value))
        if value.isdigit()
        else session.scalar(select(User).where(User.login_email == value.lower()))
    )
    if found is None:
        raise NotFound(f"No user {value!r} (give an id or a login email).")
    return found.id


def _structure_id(session: Session, value: str) -> int:
    """A structure given by id or identifier value. Raises NotFound or Invalid."""
    if value.isdigit() and session.get(Structure, int(value)) is not None:
        return int(value)
    found = session.scalars(select(Structure.id).where(Structure.identifier_value == value)).all()
    if not found:
        raise NotFound(f"No structure {value!r} (give an id or an identifier value).")
    if len(found) > 1:
        raise Invalid(f"Several structures have the identifier value {value!r}: give an id.")
    return found[0]


@policy_group.command("explain")
@click.argument("user")
@click.argument("structure")
@click.argument("space")
@click.argument("action")
@click.option("--service", help="Service code, for a question about one service.")
def policy_explain(user: str, structure: str, space: str, action: str, service: str | None) -> None:
    """Explain the decision on USER (id or login email) doing ACTION in SPACE
    of STRUCTURE (id or identifier value) on the configured database: the chain
    that allowed it, or the first missing link that denied it. SPACE "-" asks
    a management action on the structure."""
    with _runtime() as rt:
        with rt.read_sessions() as session:
            user_id, structure_id = _user_id(session, user), _structure_id(session, structure)
        click.echo(
            policytest.explain(
                rt, user_id, structure_id, None if space == "-" else space, action, service
            )
        )


@policy_group.command("diff")
@click.argument("old_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("new_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--fixture",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Evaluate on this assertion file's world instead of the configured database.",
)
def policy_diff(old_dir: Path, new_dir: Path, fixture: Path | None) -> None:
    """List every decision that the policy files of NEW_DIR take differently
    from those of OLD_DIR, on the configured database (its members, on their
    structures) or on a fixture world."""
    if fixture is not None:
        try:
            world = policytest.read_assertions(fixture).world
        except WorldError as exc:
            raise Invalid(f"assertion file: {exc}") from exc
        changes = policytest.diff_world(old_dir, new_dir, world)
    else:
        with _runtime() as rt:
            changes = policytest.diff_database(old_dir, new_dir, rt.decider.db_engine)
    for change in changes:
        click.echo(str(change))
    click.echo(f"{len(changes)} decision(s) change.", err=True)
