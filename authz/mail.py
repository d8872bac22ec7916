"""Outgoing mail: the transactional outbox, its transports and its sender.

A change that causes a mail queues it with `enqueue()` in its own transaction, so
the mail exists if and only if the change is committed. `deliver_due()` then sends
the due rows; several processes may run it at once: each row is claimed by a
conditional UPDATE before it is sent, so only one process sends it. A mail is
never dropped: a failed send stays pending and is retried forever with a capped
exponential back-off. `MailDispatcher` runs `deliver_due()` in a background
thread of each process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.policy
import logging
import os
import smtplib
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from models import OutboxMail, utcnow

from . import metrics
from .config import Settings
from .db import rowcount
from .errors import Invalid

logger = logging.getLogger("authz.mail")

# Carries the outbox id, so a transport can name what it writes after the row.
OUTBOX_ID_HEADER = "X-Authz-Outbox-Id"
# Longest error text kept on a row.
LAST_ERROR_MAX = 2000
# Column sizes of OutboxMail, checked before the database does (SQLite does not).
_TO_MAX = 254
_SUBJECT_MAX = 300
_KIND_MAX = 40


def _check_header(field: str, value: str, max_length: int) -> None:
    """Raise Invalid unless `value` is a non-empty, single-line header of at most
    `max_length` characters (a CR or LF would let it inject headers)."""
    if not value or not value.strip():
        raise Invalid(f"The mail {field} is empty.", errors={field: ["Must not be empty."]})
    if "\r" in value or "\n" in value:
        raise Invalid(
            f"The mail {field} contains a line break.",
            errors={field: ["Must not contain line breaks."]},
        )
    if len(value) > max_length:
        raise Invalid(
            f"The mail {field} is too long.", errors={field: [f"At most {max_length} characters."]}
        )


def enqueue(session: Session, *, kind: str, to: str, subject: str, body: str) -> OutboxMail:
    """Add a pending mail to `session` without committing or flushing it: it is
    written by the caller's commit, with the change that caused it, and vanishes
    with a rollback. Due at once.

    Raises Invalid if `to` or `subject` is empty, contains CR or LF, or exceeds
    its column, or if `kind` is empty or too long.
    """
    _check_header("kind", kind, _KIND_MAX)
    _check_header("to", to, _TO_MAX)
    _check_header("subject", subject, _SUBJECT_MAX)
    now = utcnow()
    row = OutboxMail(
        kind=kind,
        to_address=to,
        subject=subject,
        body=body,
        status="pending",
        attempts=0,
        created_at=now,
        next_attempt_at=now,
    )
    session.add(row)
    return row


def recipient(address: str) -> Address:
    """`address` as it can be delivered: its domain in IDNA (ASCII, `xn--…`),
    which every server routes; its local part as it is. A non-ASCII local part
    cannot be written in ASCII at all (an encoded word there, `=?utf-8?…?=@…`,
    is not an address): such a message goes out in UTF-8 with SMTPUTF8
    (RFC 6531/6532; see `wire_policy`)."""
    local, _, domain = address.rpartition("@")
    # Not a valid IDN: left as it is, and the server says no.
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return Address(username=local, domain=domain)


def needs_smtputf8(message: EmailMessage) -> bool:
    """Whether the recipient's address is not ASCII (after IDNA)."""
    return not str(message["To"] or "").isascii()


def wire_policy(message: EmailMessage) -> email.policy.EmailPolicy[EmailMessage]:
    """How `message` is written: SMTP line endings, and UTF-8 headers
    (RFC 6532) when its address needs SMTPUTF8. smtplib chooses the same by
    itself, and asks the server for SMTPUTF8 (refusing to send if it lacks it)."""
    return email.policy.SMTP.clone(utf8=True) if needs_smtputf8(message) else email.policy.SMTP


def build_message(row: OutboxMail, mail_from: str) -> EmailMessage:
    """The RFC 5322 message of an outbox row, identical on every attempt: UTF-8
    8bit body (readable as it is in a .eml file: links are not cut by
    quoted-printable soft breaks; SMTP servers announce 8BITMIME), Date of the
    row's creation, and a Message-ID made of the outbox id and creation time (so
    a receiver can spot a resent copy).

    Raises ValueError if a header value is malformed (e.g. contains a line break).
    """
    domain = mail_from.rpartition("@")[2] or "localhost"
    stamp = row.created_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = recipient(row.to_address)
    message["Subject"] = row.subject
    message["Date"] = format_datetime(row.created_at.astimezone(dt.UTC))
    message["Message-ID"] = f"<outbox-{row.id}.{stamp}@{domain}>"
    message[OUTBOX_ID_HEADER] = str(row.id)
    message.set_content(row.body, charset="utf-8", cte="8bit")
    return message


class Transport(Protocol):
    """Something that delivers a message, raising on failure."""

    def send(self, message: EmailMessage) -> None:
        """Deliver `message`; raise any exception if it was not delivered."""


class FileTransport:
    """Writes each message as an .eml file (for development and tests)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def send(self, message: EmailMessage) -> None:
        """Write `message` atomically to `<utc timestamp>-<outbox id>.eml` in the
        directory (created if missing) and log one INFO line about it.

        Raises ValueError if the message has no outbox id header (it was not made
        by build_message), OSError if the file cannot be written.
        """
        outbox_id = message.get(OUTBOX_ID_HEADER)
        if not outbox_id:
            raise ValueError(f"message without {OUTBOX_ID_HEADER} header")
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{stamp}-{outbox_id}.eml"
        data = message.as_bytes(policy=wire_policy(message))
        fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            Path(tmp_name).replace(path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        logger.info(
            "mail to %s, subject %r, written to %s", message["To"], message["Subject"], path
        )


class SMTPTransport:
    """Sends through an SMTP server, one connection per message."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        starttls: bool,
        timeout: float,
        mail_from: str,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout
        self.mail_from = mail_from

    def send(self, message: EmailMessage) -> None:
        """Send `message` with `mail_from` as envelope sender, upgrading with
        STARTTLS (certificate verified) if configured and logging in only if a
        username is set.

        Raises OSError (refused, timeout, TLS failure) or smtplib.SMTPException
        (the server rejected the login, sender, recipient or data).
        """
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(message, from_addr=self.mail_from)
        logger.info(
            "mail to %s, subject %r, sent via %s:%s",
            message["To"],
            message["Subject"],
            self.host,
            self.port,
        )


def transport_from_settings(settings: Settings) -> Transport:
    """SMTP if `smtp_host` is set, otherwise .eml files in the effective mail dir."""
    if settings.smtp_host:
        return SMTPTransport(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_username,
            settings.smtp_password,
            settings.smtp_starttls,
            settings.smtp_timeout_seconds,
            settings.mail_from,
        )
    return FileTransport(settings.effective_mail_dir)


def retry_delay(attempts: int, base_delay: float, max_delay: float) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1-based):
    base_delay doubled per further attempt, capped at max_delay."""
    # The exponent is bounded so that a row failing for months cannot overflow a float.
    return min(max_delay, base_delay * 2.0 ** min(attempts - 1, 64))


@dataclass(frozen=True)
class DeliveryReport:
    """What one deliver_due() pass did."""

    sent: int = 0
    # Failed this time; still pending and due again after the back-off.
    failed: int = 0


def _claim(
    session_factory: Callable[[], Session],
    outbox_id: int,
    now: dt.datetime,
    claim_until: dt.datetime,
) -> OutboxMail | None:
    """Claim a due row for this process and count the attempt, in a committed
    transaction of its own. Return the (detached) row, or None if it is no longer
    pending or another process holds an unexpired claim on it."""
    with session_factory() as session, session.begin():
        result = session.execute(
            update(OutboxMail)
            .where(
                OutboxMail.id == outbox_id,
                OutboxMail.status == "pending",
                or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < now),
            )
            .values(claimed_until=claim_until, attempts=OutboxMail.attempts + 1),
            execution_options={"synchronize_session": False},
        )
        if rowcount(result) != 1:
            return None
        row = session.get_one(OutboxMail, outbox_id)
        session.expunge(row)  # keep its loaded values past the commit
        return row


def deliver_due(
    session_factory: Callable[[], Session],
    transport: Transport,
    *,
    mail_from: str = Settings.mail_from,
    now: dt.datetime | None = None,
    limit: int = 50,
    base_delay: float = 30.0,
    max_delay: float = 3600.0,
    claim_seconds: float = 120,
) -> DeliveryReport:
    """Send up to `limit` due pending mails, oldest due first.

    Each row is claimed (conditional UPDATE, committed) before it is sent, so
    concurrent callers in several processes send it once; it is sent outside any
    transaction. Success marks it sent. Failure keeps it pending, records the
    error and delays the next attempt by retry_delay(); there is no attempt limit.
    A claim expires after `claim_seconds`, so a row whose sender died is retried.
    `mail_from` is the From (and envelope sender) of every message.
    `now` (timezone-aware) fixes the clock for the whole pass; by default the
    current time is read at each step.

    Raises what the database raises (the rows then keep or expire their claim and
    nothing is lost); a transport failure is recorded, never raised.
    """
    clock: Callable[[], dt.datetime] = (lambda: now) if now is not None else utcnow
    started = clock()
    with session_factory() as session, session.begin():
        candidates = session.scalars(
            select(OutboxMail.id)
            .where(
                OutboxMail.status == "pending",
                OutboxMail.next_attempt_at <= started,
                or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < started),
            )
            .order_by(OutboxMail.next_attempt_at, OutboxMail.id)
            .limit(limit)
        ).all()
    sent = failed = 0
    for outbox_id in candidates:
        claimed_at = clock()
        claim_until = claimed_at + dt.timedelta(seconds=claim_seconds)
        row = _claim(session_factory, outbox_id, claimed_at, claim_until)
        if row is None:
            continue
        try:
            transport.send(build_message(row, mail_from))
        except Exception as exc:  # noqa: BLE001 - any failure: the mail stays pending, retried
            failed += 1
            metrics.get().mail_failures.inc()
            finished = clock()
            delay = retry_delay(row.attempts, base_delay, max_delay)
            next_attempt = finished + dt.timedelta(seconds=delay)
            error = f"{type(exc).__name__}: {exc}"[:LAST_ERROR_MAX]
            logger.warning(
                "mail %s to %s failed (attempt %d), next attempt at %s: %s",
                outbox_id,
                row.to_address,
                row.attempts,
                next_attempt.isoformat(),
                error,
            )
            with session_factory() as session, session.begin():
                # Only while the claim is still ours: after it expired, another
                # process may own the row and its outcome.
                session.execute(
                    update(OutboxMail)
                    .where(
                        OutboxMail.id == outbox_id,
                        OutboxMail.status == "pending",
                        OutboxMail.claimed_until == claim_until,
                    )
                    .values(last_error=error, next_attempt_at=next_attempt, claimed_until=None),
                    execution_options={"synchronize_session": False},
                )
            continue
        sent += 1
        metrics.get().mails_sent.inc()
        with session_factory() as session, session.begin():
            session.execute(
                update(OutboxMail)
                .where(OutboxMail.id == outbox_id)
                .values(status="sent", sent_at=clock(), claimed_until=None),
                execution_options={"synchronize_session": False},
            )
    return DeliveryReport(sent=sent, failed=failed)


# Mails sent per pass of deliver_all_due().
DELIVERY_BATCH = 50


def deliver_all_due(session_factory: Callable[[], Session], settings: Settings) -> DeliveryReport:
    """Passes of deliver_due() with the settings' transport and back-off until no
    due mail is left (`authz mail deliver`, `authz maintenance`). Failed mails stay
    pending and are retried later; each is tried at most once here, since its
    next attempt is then in the future."""
    transport = transport_from_settings(settings)
    sent = failed = 0
    while True:
        report = deliver_due(
            session_factory,
            transport,
            mail_from=settings.mail_from,
            limit=DELIVERY_BATCH,
            base_delay=settings.mail_retry_base_seconds,
            max_delay=settings.mail_retry_max_seconds,
        )
        sent, failed = sent + report.sent, failed + report.failed
        if report.sent + report.failed < DELIVERY_BATCH:
            return DeliveryReport(sent=sent, failed=failed)


class MailDispatcher:
    """A daemon thread of this process running deliver_due() every
    `mail_poll_seconds`, and at once when kick() is called."""

    def __init__(self, session_factory: Callable[[], Session], settings: Settings) -> None:
        self._session_factory = session_factory
        self._settings = settings
        self._transport = transport_from_settings(settings)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="authz-mail", daemon=True)

    def start(self) -> None:
        """Start the thread; it makes a first pass at once.

        Raises RuntimeError if it was already started.
        """
        self._thread.start()

    def kick(self) -> None:
        """Ask for a pass now (call after committing a transaction that queued mail)."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to end and wait for it (at most `timeout` seconds; a send
        in progress is finished first)."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread.is_alive()

    def _run(self) -> None:
        """Loop until stopped: a pass, then sleep until kicked or the poll interval
        ends. A failing pass is logged and the loop goes on."""
        settings = self._settings
        while not self._stopping.is_set():
            # Cleared before the pass: a kick arriving during it causes another one.
            self._wake.clear()
            try:
                deliver_due(
                    self._session_factory,
                    self._transport,
                    mail_from=settings.mail_from,
                    base_delay=settings.mail_retry_base_seconds,
                    max_delay=settings.mail_retry_max_seconds,
                )
            except Exception:
                logger.exception("mail delivery pass failed")
            self._wake.wait(settings.mail_poll_seconds)


__all__ = [
    "DELIVERY_BATCH",
    "LAST_ERROR_MAX",
    "OUTBOX_ID_HEADER",
    "DeliveryReport",
    "FileTransport",
    "MailDispatcher",
    "SMTPTransport",
    "Transport",
    "build_message",
    "deliver_all_due",
    "deliver_due",
    "enqueue",
    "retry_delay",
    "transport_from_settings",
]
