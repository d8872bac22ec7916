"""The mail outbox: transactional enqueue, transports, retrying and concurrent delivery.

Every database test runs on a migrated SQLite file, and also on PostgreSQL (in a
schema of its own) when AUTHZ_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from authz import mail
from authz.config import load_settings
from authz.db import make_engine, make_session_factory, upgrade
from authz.errors import Invalid
from models import OutboxMail, utcnow

FROM = "no-reply@authz.test"
TO = "jeanne.dupont@example.org"
SUBJECT = "Activation de votre compte — Référent"
BODY = "Bonjour Jeanne,\n\nVotre accès est créé : à activer avant l'été.\n"


# --- fixtures and helpers ---------------------------------------------------


@pytest.fixture
def mail_db_url(empty_database_url: str) -> str:
    return empty_database_url


@pytest.fixture
def engines(mail_db_url: str) -> Iterator[Callable[[], Engine]]:
    """Makes engines on the test database (one per simulated process); disposes them."""
    made: list[Engine] = []

    def make() -> Engine:
        engine = make_engine(load_settings({"database_url": mail_db_url}))
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()


@pytest.fixture
def sessions(engines: Callable[[], Engine]) -> sessionmaker[Session]:
    """Session factory on the migrated test database."""
    engine = engines()
    upgrade(engine)
    return make_session_factory(engine)


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Collector]]:
    """A real SMTP server on loopback: (port, collector of what it received)."""
    collector = Collector()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, collector
    finally:
        controller.stop()


@pytest.fixture
def ascii_smtp_server() -> Iterator[tuple[int, Collector]]:
    """The same, but not announcing SMTPUTF8 (RFC 6531), which aiosmtpd does
    by default."""
    collector = Collector()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    try:
        yield port, collector
    finally:
        controller.stop()


class Collector:
    """aiosmtpd handler keeping every received message."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], EmailMessage]] = []
        # The bytes as they came, and whether the client asked for SMTPUTF8.
        self.raw: list[tuple[bytes, bool]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: ARG002, N802 - aiosmtpd's hook
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        self.raw.append((envelope.original_content or envelope.content, envelope.smtp_utf8))
        return "250 Message accepted"


class RecordingTransport:
    """In-memory transport, safe to share between threads."""

    def __init__(
        self, delay: float = 0.0, on_send: Callable[[EmailMessage], None] | None = None
    ) -> None:
        self.delay = delay
        self.on_send = on_send
        self.outbox_ids: list[int] = []
        self._lock = threading.Lock()

    def send(self, message: EmailMessage) -> None:
        if self.on_send is not None:
            self.on_send(message)
        time.sleep(self.delay)
        with self._lock:
            self.outbox_ids.append(int(message[mail.OUTBOX_ID_HEADER]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smtp_transport(port: int) -> mail.SMTPTransport:
    return mail.SMTPTransport("127.0.0.1", port, "", "", False, 2.0, FROM)


def queue(sessions: sessionmaker[Session], count: int = 1) -> list[int]:
    """Enqueue `count` mails in one committed transaction; return their ids."""
    with sessions.begin() as session:
        rows = [
            mail.enqueue(
                session,
                kind="activation",
                to=f"user{i}@example.org" if i else TO,
                subject=SUBJECT,
                body=BODY,
            )
            for i in range(count)
        ]
    return [row.id for row in rows]


def load(sessions: sessionmaker[Session], outbox_id: int) -> OutboxMail:
    with sessions() as session:
        return session.get_one(OutboxMail, outbox_id)


def committed_count(engine: Engine) -> int:
    """Outbox rows visible to another connection (outside any SQLAlchemy transaction)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SELECT count(*) FROM outbox_mails")
        (count,) = cursor.fetchall()[0]
        return count
    finally:
        raw.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def text_of(message: EmailMessage) -> str:
    return message.get_content().replace("\r\n", "\n")


# --- enqueue -----------------------------------------------------------------


def test_enqueued_mail_is_written_only_by_the_callers_commit(
    sessions: sessionmaker[Session], engines: Callable[[], Engine]
) -> None:
    observer = engines()
    with sessions() as session:
        mail.enqueue(session, kind="activation", to=TO, subject=SUBJECT, body=BODY)
        session.flush()  # the INSERT has run, inside the caller's transaction
        assert committed_count(observer) == 0
        session.rollback()
    assert committed_count(observer) == 0

    with sessions() as session:
        row = mail.enqueue(session, kind="activation", to=TO, subject=SUBJECT, body=BODY)
        session.commit()
    assert committed_count(observer) == 1
    stored = load(sessions, row.id)
    assert (stored.status, stored.attempts, stored.claimed_until) == ("pending", 0, None)
    assert stored.next_attempt_at <= utcnow()


@pytest.mark.parametrize(
    "field,value",
    [
        ("to", ""),
        ("to", "a@example.org\r\nBcc: victim@example.org"),
        ("to", "a@example.org\n"),
        ("subject", ""),
        ("subject", "Hello\r\nBcc: victim@example.org"),
        ("subject", "x" * 301),
    ],
)
def test_enqueue_refuses_empty_or_multiline_headers(field: str, value: str) -> None:
    fields = {"to": TO, "subject": SUBJECT, field: value}
    with Session() as session, pytest.raises(Invalid) as caught:
        mail.enqueue(session, kind="activation", body=BODY, **fields)
    assert field in caught.value.extra["errors"]
    assert not session.new


# --- transports ---------------------------------------------------------------


def test_file_transport_writes_a_parseable_utf8_eml(
    sessions: sessionmaker[Session], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    [outbox_id] = queue(sessions)
    directory = tmp_path / "mail" / "out"
    caplog.set_level(logging.INFO, logger="authz.mail")

    report = mail.deliver_due(sessions, mail.FileTransport(directory), mail_from=FROM)

    assert report == mail.DeliveryReport(sent=1, failed=0)
    [path] = directory.iterdir()  # no temporary file left behind
    assert re.fullmatch(rf"\d{{8}}T\d{{12}}Z-{outbox_id}\.eml", path.name)
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert (message["To"], message["From"], message["Subject"]) == (TO, FROM, SUBJECT)
    assert text_of(message) == BODY
    assert f"outbox-{outbox_id}." in message["Message-ID"]
    assert message["Date"].datetime.tzinfo is not None
    [line] = [r.getMessage() for r in caplog.records if r.name == "authz.mail"]
    assert TO in line and repr(SUBJECT) in line and str(path) in line
    assert load(sessions, outbox_id).status == "sent"


def test_transport_from_settings_uses_smtp_only_when_a_host_is_set(tmp_path: Path) -> None:
    files = mail.transport_from_settings(load_settings({"mail_dir": str(tmp_path)}))
    assert isinstance(files, mail.FileTransport) and files.directory == tmp_path
    smtp = mail.transport_from_settings(
        load_settings({"smtp_host": "mx.example.org", "smtp_port": 587})
    )
    assert isinstance(smtp, mail.SMTPTransport) and (smtp.host, smtp.port) == (
        "mx.example.org",
        587,
    )


def test_smtp_delivery_reaches_a_real_server_and_marks_the_row_sent(
    sessions: sessionmaker[Session], smtp_server: tuple[int, Collector]
) -> None:
    port, collector = smtp_server
    [outbox_id] = queue(sessions)

    report = mail.deliver_due(sessions, smtp_transport(port), mail_from=FROM)

    assert report == mail.DeliveryReport(sent=1, failed=0)
    [(envelope_from, recipients, message)] = collector.received
    assert (envelope_from, recipients) == (FROM, [TO])
    assert (message["To"], message["From"], message["Subject"]) == (TO, FROM, SUBJECT)
    assert text_of(message) == BODY
    row = load(sessions, outbox_id)
    assert (row.status, row.attempts, row.claimed_until) == ("sent", 1, None)
    assert row.sent_at is not None


# --- retries --------------------------------------------------------------------


def test_retry_delay_doubles_from_the_base_and_is_capped() -> None:
    assert [mail.retry_delay(n, 30, 3600) for n in (1, 2, 3, 7, 8)] == [30, 60, 120, 1920, 3600]
    assert mail.retry_delay(100_000, 30, 3600) == 3600  # months of failures: no overflow


def test_failed_send_stays_pending_and_retries_with_capped_backoff_until_sent_once(
    sessions: sessionmaker[Session],
) -> None:
    [outbox_id] = queue(sessions)
    port = free_port()  # nothing listens there yet
    transport = smtp_transport(port)
    t0 = utcnow()

    def deliver(at: dt.datetime) -> mail.DeliveryReport:
        return mail.deliver_due(
            sessions, transport, mail_from=FROM, now=at, base_delay=30, max_delay=100
        )

    assert deliver(t0) == mail.DeliveryReport(sent=0, failed=1)
    row = load(sessions, outbox_id)
    assert (row.status, row.attempts, row.claimed_until) == ("pending", 1, None)
    assert row.last_error and "refused" in row.last_error.lower()
    assert row.next_attempt_at == t0 + dt.timedelta(seconds=30)

    assert deliver(t0 + dt.timedelta(seconds=29)) == mail.DeliveryReport()  # not due yet
    assert load(sessions, outbox_id).attempts == 1

    at = t0 + dt.timedelta(seconds=30)
    for attempts, delay in [(2, 60), (3, 100), (4, 100)]:  # doubles, then capped at 100
        assert deliver(at) == mail.DeliveryReport(sent=0, failed=1)
        row = load(sessions, outbox_id)
        assert (row.status, row.attempts) == ("pending", attempts)
        assert row.next_attempt_at == at + dt.timedelta(seconds=delay)
        at = row.next_attempt_at

    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert deliver(at) == mail.DeliveryReport(sent=1, failed=0)
        assert deliver(at + dt.timedelta(days=1)) == mail.DeliveryReport()
    finally:
        controller.stop()
    assert len(collector.received) == 1
    row = load(sessions, outbox_id)
    assert (row.status, row.attempts, row.claimed_until) == ("sent", 5, None)


def test_a_claim_left_by_a_dead_sender_expires_and_the_mail_is_retried(
    sessions: sessionmaker[Session],
) -> None:
    [outbox_id] = queue(sessions)
    t0 = utcnow()
    with sessions.begin() as session:  # as if a process claimed it, then died
        session.execute(
            update(OutboxMail).values(claimed_until=t0 + dt.timedelta(seconds=120), attempts=1)
        )
    transport = RecordingTransport()

    assert mail.deliver_due(sessions, transport, now=t0 + dt.timedelta(seconds=60)).sent == 0
    assert mail.deliver_due(sessions, transport, now=t0 + dt.timedelta(seconds=121)).sent == 1
    assert transport.outbox_ids == [outbox_id]
    assert load(sessions, outbox_id).attempts == 2


# --- concurrency -----------------------------------------------------------------


def test_concurrent_deliverers_send_each_mail_exactly_once(
    sessions: sessionmaker[Session], engines: Callable[[], Engine]
) -> None:
    ids = queue(sessions, 20)
    transport = RecordingTransport(delay=0.005)
    start = threading.Barrier(2)
    reports: list[mail.DeliveryReport] = []
    errors: list[BaseException] = []

    def worker() -> None:
        factory = make_session_factory(engines())  # its own engine, like another process
        start.wait()
        try:
            reports.append(mail.deliver_due(factory, transport))
        except BaseException as exc:  # noqa: BLE001 - reported by the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert sorted(transport.outbox_ids) == ids
    assert sum(report.sent for report in reports) == 20
    with sessions() as session:
        states = session.execute(
            select(OutboxMail.status, OutboxMail.attempts, func.count()).group_by(
                OutboxMail.status, OutboxMail.attempts
            )
        ).all()
    assert [tuple(state) for state in states] == [("sent", 1, 20)]


def test_a_claimed_mail_is_not_sent_by_another_deliverer(
    sessions: sessionmaker[Session], engines: Callable[[], Engine]
) -> None:
    first, *others = queue(sessions, 5)
    other_process = make_session_factory(engines())
    other_transport = RecordingTransport()
    other_reports: list[mail.DeliveryReport] = []

    def while_sending(message: EmailMessage) -> None:
        # The first mail is claimed and being sent: the other process runs meanwhile.
        if not other_reports:
            other_reports.append(mail.deliver_due(other_process, other_transport))

    transport = RecordingTransport(on_send=while_sending)
    report = mail.deliver_due(sessions, transport)

    assert transport.outbox_ids == [first]
    assert other_transport.outbox_ids == others
    assert (report.sent, other_reports[0].sent) == (1, 4)
    assert all(load(sessions, i).attempts == 1 for i in [first, *others])


# --- dispatcher ------------------------------------------------------------------------


def test_dispatcher_delivers_on_kick_without_waiting_for_the_poll_and_stops(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    directory = tmp_path / "mail"
    settings = load_settings({"mail_dir": str(directory), "mail_poll_seconds": 60})
    [backlog] = queue(sessions)
    dispatcher = mail.MailDispatcher(sessions, settings)
    dispatcher.start()
    try:
        # The first pass runs at start; after it the thread sleeps for 60 s.
        assert wait_for(lambda: load(sessions, backlog).status == "sent")
        [fresh] = queue(sessions)
        dispatcher.kick()
        assert wait_for(lambda: load(sessions, fresh).status == "sent", timeout=5)
        assert len(list(directory.glob("*.eml"))) == 2
    finally:
        dispatcher.stop(timeout=5)
    assert not dispatcher.is_alive()


def test_dispatcher_survives_a_failing_pass(
    sessions: sessionmaker[Session], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = {"n": 0}

    def flaky_sessions() -> Session:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database unreachable")
        return sessions()

    settings = load_settings({"mail_dir": str(tmp_path / "mail"), "mail_poll_seconds": 60})
    dispatcher = mail.MailDispatcher(flaky_sessions, settings)
    dispatcher.start()
    try:
        assert wait_for(lambda: any("pass failed" in r.getMessage() for r in caplog.records))
        [outbox_id] = queue(sessions)
        dispatcher.kick()
        assert wait_for(lambda: load(sessions, outbox_id).status == "sent")
        assert dispatcher.is_alive()
    finally:
        dispatcher.stop(timeout=5)


# --- addresses that are not ASCII -----------------------------------------------------


def queue_to(sessions: sessionmaker[Session], to: str) -> int:
    with sessions.begin() as session:
        row = mail.enqueue(session, kind="activation", to=to, subject=SUBJECT, body=BODY)
        session.flush()
        return row.id


def to_line(raw: bytes) -> bytes:
    return next(line for line in raw.splitlines() if line.startswith(b"To:"))


def test_a_non_ascii_local_part_goes_out_in_utf8_over_smtputf8(
    sessions: sessionmaker[Session], smtp_server: tuple[int, Collector]
) -> None:
    """Issue 15: not `=?utf-8?b?…?=@example.org`, which is no address."""
    port, collector = smtp_server
    queue_to(sessions, "frédéric.château@exämple.org")

    report = mail.deliver_due(sessions, smtp_transport(port), mail_from=FROM)

    assert report == mail.DeliveryReport(sent=1, failed=0)
    [(_, recipients, message)] = collector.received
    assert recipients == ["frédéric.château@xn--exmple-cua.org"]
    [(raw, smtp_utf8)] = collector.raw
    assert smtp_utf8
    assert to_line(raw) == "To: frédéric.château@xn--exmple-cua.org".encode()
    assert b"=?utf-8?" not in to_line(raw)
    assert text_of(message) == BODY


def test_an_idn_domain_alone_goes_out_in_ascii_without_smtputf8(
    sessions: sessionmaker[Session], ascii_smtp_server: tuple[int, Collector]
) -> None:
    port, collector = ascii_smtp_server
    queue_to(sessions, "claire@boulangerie-château.example")

    report = mail.deliver_due(sessions, smtp_transport(port), mail_from=FROM)

    assert report == mail.DeliveryReport(sent=1, failed=0)
    [(_, recipients, _message)] = collector.received
    assert recipients == ["claire@xn--boulangerie-chteau-vsb.example"]
    [(raw, smtp_utf8)] = collector.raw
    assert not smtp_utf8
    assert to_line(raw) == b"To: claire@xn--boulangerie-chteau-vsb.example"


def test_a_non_ascii_local_part_is_not_mangled_for_a_server_without_smtputf8(
    sessions: sessionmaker[Session], ascii_smtp_server: tuple[int, Collector]
) -> None:
    """Such an address cannot be written in ASCII: the mail waits (retried)
    rather than go out to an address that does not exist."""
    port, collector = ascii_smtp_server
    outbox_id = queue_to(sessions, "frédéric@example.org")

    report = mail.deliver_due(sessions, smtp_transport(port), mail_from=FROM)

    assert report == mail.DeliveryReport(sent=0, failed=1)
    assert collector.received == []
    assert load(sessions, outbox_id).status == "pending"


def test_the_eml_file_of_a_non_ascii_address_names_it_in_utf8(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    queue_to(sessions, "frédéric@example.org")

    mail.deliver_due(sessions, mail.FileTransport(tmp_path), mail_from=FROM)

    [eml] = tmp_path.glob("*.eml")
    assert to_line(eml.read_bytes()) == "To: frédéric@example.org".encode()
