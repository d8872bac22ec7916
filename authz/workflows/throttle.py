"""Brute-force limits on log-in: failures are counted per login and per client
address (rows of `login_throttles`), and a key that reaches its limit is locked
out for AUTHZ_LOGIN_LOCKOUT_SECONDS.

Person log-ins (authz/workflows/accounts.py) and technical tokens (authz/workflows/technical.py)
share these counters, so guessing a technical secret costs the same lock-outs
as guessing a password. A caller:

    keys = throttle.check(session, rt, login, address, now)  # TooManyAttempts
    ... wrong credentials: throttle.record_failure(session, rt, keys, now)
    ... right ones:        throttle.forget_login(session, keys)
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import LoginThrottle

from ..errors import TooManyAttempts
from ..runtime import Runtime

# (key, failures allowed before a lock-out); the login's key comes first.
Keys = list[tuple[str, int]]


def keys_for(rt: Runtime, login: str, address: str | None) -> Keys:
    """The counters a log-in attempt with `login` from `address` counts on."""
    keys = [(f"email:{login}", rt.settings.login_max_failures)]
    if address:
        keys.append((f"ip:{address}", rt.settings.login_max_failures_per_ip))
    return keys


def check(session: Session, rt: Runtime, login: str, address: str | None, now: dt.datetime) -> Keys:
    """The attempt's keys, if none of them is locked out at `now`.

    Raises TooManyAttempts (with the seconds to wait before retrying).
    """
    keys = keys_for(rt, login, address)
    for key, _limit in keys:
        row = session.get(LoginThrottle, key)
        if row is not None and row.locked_until is not None and row.locked_until > now:
            retry = int((row.locked_until - now).total_seconds()) + 1
            raise TooManyAttempts("Too many failed log-ins; try again later.", retry_after=retry)
    return keys


def record_failure(session: Session, rt: Runtime, keys: Keys, now: dt.datetime) -> None:
    """Count a failed attempt on each key, locking out those that reach their
    limit; commits at once (the caller then raises, and must not roll it back)."""
    window = dt.timedelta(seconds=rt.settings.login_lockout_seconds)
    for attempt in range(3):
        try:
            for key, limit in keys:
                row = session.get(LoginThrottle, key)
                if row is None:
                    row = LoginThrottle(key=key, failures=0, window_started_at=now)
                    session.add(row)
                elif row.window_started_at + window <= now:
                    row.failures, row.window_started_at, row.locked_until = 0, now, None
                row.failures += 1
                if row.failures >= limit:
                    row.locked_until = now + window
            session.commit()
            return
        except IntegrityError:  # a concurrent failure inserted the same key first
            session.rollback()
    raise RuntimeError("could not record a failed log-in")


def forget_login(session: Session, keys: Keys) -> None:
    """A successful log-in clears its login's counter (not the address's), in
    the caller's transaction."""
    row = session.get(LoginThrottle, keys[0][0])
    if row is not None:
        session.delete(row)
