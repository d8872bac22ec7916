"""Brute-force limits on every check of a password or secret: attempts are
counted per login and per client address (rows of `login_throttles`), and a
key that reaches its limit is locked out for AUTHZ_LOGIN_LOCKOUT_SECONDS.

Person log-ins and reactivations (authz/workflows/accounts.py), the password
confirmation of a deactivation (authz/workflows/lifecycle.py), technical tokens
(authz/workflows/technical.py) and client API keys (authz/workflows/clients.py,
per address only) share these counters, so guessing any of them costs the same
lock-outs.

An attempt is counted BEFORE the secret is checked, by one atomic upsert per
key (INSERT … ON CONFLICT DO UPDATE … RETURNING), committed at once: of N
parallel guesses, on any backend, only the first `limit` are checked at all,
the others are refused without running argon2. A right secret then gives the
attempt back. A caller:

    keys = throttle.reserve(session, rt, login, address, now)  # TooManyAttempts; commits
    ... wrong secret: throttle.record_failure(session, rt, keys, now)   # commits
    ... right one:    throttle.forget_login(session, keys)  # in the caller's transaction
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import Delete, Row, Table, Update, and_, case, delete, literal, null, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import LoginThrottle

from .. import metrics
from ..db import rowcount
from ..errors import TooManyAttempts
from ..runtime import Runtime

# (key, attempts allowed in a window); the login's key comes first.
Keys = list[tuple[str, int]]

_TABLE = cast(Table, LoginThrottle.__table__)


def keys_for(rt: Runtime, login: str | None, address: str | None) -> Keys:
    """The counters an attempt for `login` (None: no login, e.g. an API key)
    from `address` counts on."""
    keys = [(f"email:{login}", rt.settings.login_max_failures)] if login is not None else []
    if address:
        keys.append((f"ip:{address}", rt.settings.login_max_failures_per_ip))
    return keys


def _count(
    session: Session, key: str, now: dt.datetime, window: dt.timedelta
) -> Row[int, dt.datetime, dt.datetime | None]:
    """Add one attempt to `key`'s counter, starting a new window when the last
    one and its lock-out have ended; returns (failures, window start, locked
    until) as they are after this attempt. One statement: concurrent attempts
    on the same key are serialised by the database on its row."""
    ended = and_(
        _TABLE.c.window_started_at <= now - window,
        or_(_TABLE.c.locked_until.is_(None), _TABLE.c.locked_until <= now),
    )
    at_now = literal(now, _TABLE.c.window_started_at.type)
    upsert: postgresql.Insert | sqlite.Insert = (
        postgresql.insert(_TABLE)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(_TABLE)
    )
    stmt = (
        upsert.values(key=key, failures=1, window_started_at=now, locked_until=None)
        .on_conflict_do_update(
            index_elements=[_TABLE.c.key],
            set_={
                "failures": case((ended, 1), else_=_TABLE.c.failures + 1),
                "window_started_at": case((ended, at_now), else_=_TABLE.c.window_started_at),
                "locked_until": case((ended, null()), else_=_TABLE.c.locked_until),
            },
        )
        .returning(_TABLE.c.failures, _TABLE.c.window_started_at, _TABLE.c.locked_until)
    )
    return session.execute(stmt).one()


def reserve(
    session: Session, rt: Runtime, login: str | None, address: str | None, now: dt.datetime
) -> Keys:
    """Count an attempt on its keys (see keys_for) before its secret is
    checked, and commit; return the keys for record_failure / forget_login.

    Raises TooManyAttempts (with the seconds to wait) when a key is locked out,
    or already has as many attempts as it allows in its window: the secret
    must then not be checked.
    """
    return reserve_keys(session, rt, keys_for(rt, login, address), now)


def reserve_keys(session: Session, rt: Runtime, keys: Keys, now: dt.datetime) -> Keys:
    """reserve() on counters named by the caller (e.g. "forgot password" mails
    asked per login, authz/workflows/accounts.py). Raises TooManyAttempts."""
    window = dt.timedelta(seconds=rt.settings.login_lockout_seconds)
    for key, limit in keys:
        failures, started, locked_until = _count(session, key, now, window)
        if (locked_until is not None and locked_until > now) or failures > limit:
            session.commit()
            metrics.get().login_failures.labels("locked_out").inc()
            until = locked_until if locked_until is not None and locked_until > now else None
            retry = ((until or started + window) - now).total_seconds()
            raise TooManyAttempts(
                "Too many failed attempts; try again later.", retry_after=max(1, int(retry) + 1)
            )
    session.commit()
    return keys


def record_failure(session: Session, rt: Runtime, keys: Keys, now: dt.datetime) -> None:
    """The secret was wrong: the attempt stays counted, and each key that has
    reached its limit is locked out from now. Commits at once (the caller then
    raises, and must not roll it back)."""
    until = now + dt.timedelta(seconds=rt.settings.login_lockout_seconds)
    m = metrics.get()
    m.login_failures.labels("wrong_secret").inc()
    for key, limit in keys:
        locked = rowcount(
            session.execute(
                update(LoginThrottle)
                .where(
                    LoginThrottle.key == key,
                    LoginThrottle.failures >= limit,
                    or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= now),
                )
                .values(locked_until=until)
                .execution_options(synchronize_session=False)
            )
        )
        if locked:
            m.lockouts.inc()
    session.commit()


def forget_login(session: Session, keys: Keys) -> None:
    """The secret was right: the login's counter is cleared, and the address's
    gets its attempt back; in the caller's transaction."""
    for key, _limit in keys:
        stmt: Delete | Update
        if key.startswith("email:"):
            stmt = delete(LoginThrottle).where(LoginThrottle.key == key)
        else:
            stmt = (
                update(LoginThrottle)
                .where(LoginThrottle.key == key, LoginThrottle.failures > 0)
                .values(failures=LoginThrottle.failures - 1)
            )
        session.execute(stmt.execution_options(synchronize_session=False))
