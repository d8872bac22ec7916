"""Periodic clean-up of rows that can no longer serve (run from cron by
`authz maintenance`; safe to run at any time and from several hosts)."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import Delete, delete, or_
from sqlalchemy.orm import Session

from models import (
    ActivationToken,
    AuthToken,
    ConsoleSession,
    LoginThrottle,
    PasswordResetToken,
    PolicyChange,
    utcnow,
)

from .. import decision_log
from ..db import rowcount
from ..runtime import Runtime
from . import invitations
from .lifecycle import close_expired_accounts
from .records import commit

# How long a dead token is kept before deletion (for the record of recent log-ins).
GRACE = dt.timedelta(days=1)

log = logging.getLogger("authz.maintenance")


def run_maintenance(
    session: Session, rt: Runtime, now: dt.datetime | None = None
) -> dict[str, int]:
    """Delete log-in tokens and console sessions expired, revoked or idle more
    than a day ago, activation and password-reset links expired more than a
    day ago, log-in throttle rows whose counting window and lock-out have both
    ended, and decision log records older than
    AUTHZ_DECISION_LOG_RETENTION_DAYS. Return the number of rows deleted per
    kind; change-log rows older than AUTHZ_CHANGE_LOG_RETENTION_DAYS (a worker
    that far behind reloads its whole decision index instead, a change-feed
    reader gets 410 and starts again). Then close the accounts
    deactivated more than 60 days ago, and mark the invitations past their
    expiry as expired. Commits.
    """
    now = now or utcnow()
    cutoff = now - GRACE
    window_start_limit = now - dt.timedelta(seconds=rt.settings.login_lockout_seconds)
    idle = dt.timedelta(seconds=rt.settings.console_idle_timeout_seconds)

    def purge(statement: Delete) -> int:
        # Bulk deletes: the rows are not loaded, so there is nothing to synchronize.
        return rowcount(
            session.execute(statement, execution_options={"synchronize_session": False})
        )

    counts = {
        "auth_tokens": purge(
            delete(AuthToken).where(
                or_(AuthToken.expires_at < cutoff, AuthToken.revoked_at < cutoff)
            )
        ),
        "activation_tokens": purge(
            delete(ActivationToken).where(ActivationToken.expires_at < cutoff)
        ),
        "login_throttles": purge(
            delete(LoginThrottle).where(
                LoginThrottle.window_started_at <= window_start_limit,
                or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= now),
            )
        ),
        "policy_changes": purge(
            delete(PolicyChange).where(
                PolicyChange.created_at
                < now - dt.timedelta(days=rt.settings.change_log_retention_days)
            )
        ),
        "password_reset_tokens": purge(
            delete(PasswordResetToken).where(PasswordResetToken.expires_at < cutoff)
        ),
        "console_sessions": purge(
            delete(ConsoleSession).where(
                or_(
                    ConsoleSession.expires_at < cutoff,
                    ConsoleSession.revoked_at < cutoff,
                    ConsoleSession.last_seen_at < cutoff - idle,
                )
            )
        ),
        "decision_records": decision_log.prune(
            session, rt.settings.decision_log_retention_days, now
        ),
    }
    commit(session, rt)
    counts["closed_accounts"] = close_expired_accounts(session, rt, now)
    # Invitations past their expiry are already refused as expired; this writes
    # their status and history entry (logged, not counted: nothing is deleted).
    expired = invitations.expire(session, rt, now)
    if expired:
        log.info("%d invitation(s) expired", expired)
    return counts
