"""Browser sessions of the manager console (api/console/): opened by a log-in
with the same rule as the API's bearer tokens (accounts.active_person), ended
by log-out, by a password reset, when unused for AUTHZ_CONSOLE_IDLE_TIMEOUT_SECONDS
or after AUTHZ_TOKEN_TTL_SECONDS. The cookie carries a 256-bit random value;
only its SHA-256 digest is stored (like bearer tokens, docs/decisions.md)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import ConsoleSession, User, utcnow

from ..runtime import Runtime
from ..security import digest, new_token
from . import accounts
from .records import commit

# A session's last use is written at most this often (one write per page
# would cost more than the idle timeout's precision is worth).
TOUCH_EVERY = dt.timedelta(seconds=30)


def open_session(
    session: Session, rt: Runtime, *, login_email: str, password: str, address: str | None
) -> tuple[str, ConsoleSession]:
    """Log in to the console: the cookie value (shown once) and its row.

    Raises what accounts.active_person raises (TooManyAttempts,
    Unauthenticated `invalid_credentials`, Forbidden `account_not_active`)."""
    person = accounts.active_person(
        session, rt, login_email=login_email, password=password, address=address
    )
    now = utcnow()
    token = new_token("cs_")
    row = ConsoleSession(
        user_id=person.id,
        token_hash=digest(token),
        created_at=now,
        last_seen_at=now,
        expires_at=now + dt.timedelta(seconds=rt.settings.token_ttl_seconds),
    )
    session.add(row)
    commit(session, rt)
    return token, row


def resume(session: Session, rt: Runtime, token: str) -> tuple[User, ConsoleSession] | None:
    """The active person of a live session, its last use moved to now; None for
    an unknown, revoked, expired or idle session (an idle one is revoked), or
    an account no longer active. Commits."""
    row = session.scalar(select(ConsoleSession).where(ConsoleSession.token_hash == digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    now = utcnow()
    idle = dt.timedelta(seconds=rt.settings.console_idle_timeout_seconds)
    if row.expires_at <= now or row.last_seen_at + idle <= now:
        end(session, rt, row.id)
        return None
    user = session.get(User, row.user_id)
    if user is None or user.status != "active":
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        commit(session, rt)
    return user, row


def end(session: Session, rt: Runtime, session_id: int) -> None:
    """Log out: the session stops working at once. Commits."""
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == session_id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    commit(session, rt)
