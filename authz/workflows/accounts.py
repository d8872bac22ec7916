"""People's accounts: sign-up, activation, log-in, log-out and one's own profile.

Every workflow here owns its transaction: it commits what it did, or raises and
leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import ActivationToken, AuthToken, ConsoleSession, PasswordResetToken, User, utcnow

from .. import logins, passwords
from ..db import rowcount
from ..errors import Conflict, Forbidden, Invalid, Unauthenticated
from ..runtime import Runtime
from ..security import digest, new_token
from . import throttle
from .records import bump_revision, commit, queue_mail

# The pages mailed links open (api/console/): a GET shows a form, its POST acts.
ACTIVATION_PAGE = "/console/activation"
RESET_LINK_PAGE = "/console/password-reset"
EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f]{1,64}@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$")
PROFILE_FIELDS = ("contact_email", "last_name", "first_name", "phone")


def normalize_email(value: str, field: str = "login_email") -> str:
    """The address in normal form (authz/logins.py: NFKC, stripped, lower-cased).
    Raises Invalid (not an address)."""
    email = logins.normalize(value)
    if len(email) > 254 or not EMAIL_RE.match(email):
        raise Invalid("Not a valid email address.", errors={field: ["Not a valid email address."]})
    return email


def find_by_login(session: Session, login_email: str) -> User | None:
    """The account with this login email, compared in normal form (an account
    stored before logins were normalised is found by its exact lower case)."""
    exact = (login_email or "").strip().lower()
    normal = logins.normalize(login_email)
    found = session.scalars(select(User).where(User.login_email.in_({exact, normal}))).all()
    return next((u for u in found if u.login_email == exact), found[0] if found else None)


def create_account(
    session: Session,
    rt: Runtime,
    *,
    login_email: str,
    last_name: str,
    first_name: str,
    contact_email: str | None = None,
    phone: str | None = None,
    created_for_structure_id: int | None = None,
) -> User:
    """Create a pending person account and mail its activation link;
    `created_for_structure_id`: the structure whose manager creates it (None
    for a sign-up).

    Raises Invalid (bad email), Conflict `login_email_taken` (the same login in
    normal form: any letter case, any Unicode compatibility form),
    `login_confusable` (it looks like another account's login: authz/logins.py).
    Does not commit: sign_up() and the manager workflow commit with their own writes.
    """
    login = normalize_email(login_email)
    contact = normalize_email(contact_email, "contact_email") if contact_email else login
    if find_by_login(session, login) is not None:
        raise Conflict("An account already uses this login email.", code="login_email_taken")
    key = logins.skeleton(login)
    _serialize_on(session, key)
    if session.scalar(select(User.id).where(User.login_skeleton == key).limit(1)) is not None:
        raise Conflict(
            "This login email looks like the login of another account; choose another one.",
            code="login_confusable",
        )
    user = User(
        login_email=login,
        contact_email=contact,
        last_name=last_name.strip(),
        first_name=first_name.strip(),
        phone=(phone or "").strip() or None,
        kind="person",
        status="pending",
        created_for_structure_id=created_for_structure_id,
        login_skeleton=key,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent sign-up won the unique key
        session.rollback()
        raise Conflict(
            "An account already uses this login email.", code="login_email_taken"
        ) from exc
    _issue_activation(session, rt, user)
    return user


def _serialize_on(session: Session, key: str) -> None:
    """Make concurrent creations of logins with the same look-alike key wait for
    each other until commit, so that the check above sees the first one. On
    SQLite the write lock taken at BEGIN already does."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"login:{key}"))))


def sign_up(session: Session, rt: Runtime, **fields: Any) -> User:
    """Anyone, logged out, creates their own pending account (see create_account)."""
    user = create_account(session, rt, **fields)
    commit(session, rt)
    return user


def _issue_activation(session: Session, rt: Runtime, user: User) -> None:
    """A new single-use link; every earlier unused link of the user stops working."""
    now = utcnow()
    _expire_unused(session, ActivationToken, user.id, now)
    token = new_token()
    session.add(
        ActivationToken(
            user_id=user.id,
            token_hash=digest(token),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=rt.settings.activation_ttl_seconds),
        )
    )
    base = rt.link_base()
    minutes = rt.settings.activation_ttl_seconds // 60
    body = (
        f"Hello {user.first_name} {user.last_name},\n\n"
        f"An account was created with the login {user.login_email}.\n"
        f"Activate it and choose your password within {minutes} minutes "
        f"(the link works once):\n\n"
        f"  {base}{ACTIVATION_PAGE}?token={token}\n\n"
        f"With the API, send the token and your new password:\n\n"
        f"  curl -X POST {base}/v1/accounts/activation -H 'Content-Type: application/json' \\\n"
        f'       -d \'{{"token": "{token}", "password": "<your password>"}}\'\n\n'
        f"If you did not ask for this account, ignore this message.\n"
    )
    queue_mail(
        session, kind="activation", to=user.login_email, subject="Activate your account", body=body
    )


def send_activation(session: Session, rt: Runtime, user: User) -> None:
    """Mail a new activation link to a pending person account; its earlier links
    stop working. Does not commit (the caller commits with its own writes).

    Raises Conflict `account_not_pending` (active, inactive or closed account, or
    a technical user: they have no activation link).
    """
    if user.kind != "person" or user.status != "pending":
        raise Conflict(
            "Only a pending person account gets an activation link.", code="account_not_pending"
        )
    _issue_activation(session, rt, user)


def resend_activation(session: Session, rt: Runtime, login_email: str) -> None:
    """Send a new link to a pending account. Says nothing about other emails
    (no account enumeration): the caller always answers the same way."""
    try:
        login = normalize_email(login_email)
    except Invalid:
        return
    user = find_by_login(session, login)
    if user is not None and user.status == "pending" and user.kind == "person":
        _issue_activation(session, rt, user)
        commit(session, rt)


def activate(session: Session, rt: Runtime, *, token: str, password: str) -> User:
    """Use an activation link: set the password, make the account active.

    Raises Invalid `activation_link_invalid` (unknown, expired or already used
    link; the three are not told apart), Invalid `weak_password` (the password
    policy of authz/passwords.py; the link stays usable).
    """
    invalid = Invalid(
        "This activation link is invalid, expired or already used.", code="activation_link_invalid"
    )
    now = utcnow()
    row = _open_link(session, ActivationToken, token, now, invalid)
    owner = session.get(User, row.user_id)
    passwords.check(password or "", login_email=owner.login_email if owner else None)
    _spend_link(session, ActivationToken, row.id, now, invalid)
    user = session.get(User, row.user_id)
    if user is None or user.status != "pending":
        session.rollback()
        raise invalid
    user.password_hash = rt.hasher.hash(password)
    user.status = "active"
    user.activated_at = now
    # An account a manager created may already be attached: active, it grants.
    bump_revision(session, users=[user.id])
    commit(session, rt)
    return user


def request_password_reset(
    session: Session, rt: Runtime, login_email: str, address: str | None
) -> None:
    """Forgot password: mail a single-use link (valid
    AUTHZ_PASSWORD_RESET_TTL_SECONDS) to an active person account; every
    earlier unused link of the account stops working. Says nothing about the
    address (no account enumeration): unknown, pending, inactive and technical
    accounts get no mail and the caller answers the same way.

    Raises TooManyAttempts: more than AUTHZ_PASSWORD_RESET_MAX_REQUESTS asks for
    this login, or AUTHZ_LOGIN_MAX_FAILURES_PER_IP from this address, in the
    window, counted whether or not the account exists.
    """
    now = utcnow()
    login = logins.normalize(login_email or "")
    keys: throttle.Keys = [(f"reset:{login}", rt.settings.password_reset_max_requests)]
    if address:
        keys.append((f"reset-ip:{address}", rt.settings.login_max_failures_per_ip))
    throttle.reserve_keys(session, rt, keys, now)
    try:
        login = normalize_email(login_email)
    except Invalid:
        return
    user = find_by_login(session, login)
    if user is None or user.kind != "person" or user.status != "active":
        return
    _expire_unused(session, PasswordResetToken, user.id, now)
    token = new_token()
    session.add(
        PasswordResetToken(
            user_id=user.id,
            token_hash=digest(token),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=rt.settings.password_reset_ttl_seconds),
        )
    )
    minutes = rt.settings.password_reset_ttl_seconds // 60
    body = (
        f"Hello {user.first_name} {user.last_name},\n\n"
        f"Someone asked to choose a new password for the login {user.login_email}.\n"
        f"Choose it within {minutes} minutes (the link works once):\n\n"
        f"  {rt.link_base()}{RESET_LINK_PAGE}?token={token}\n\n"
        f"If you did not ask for this, ignore this message: your password is unchanged.\n"
    )
    queue_mail(
        session,
        kind="password_reset",
        to=user.login_email,
        subject="Choose a new password",
        body=body,
    )
    commit(session, rt)


def reset_password(session: Session, rt: Runtime, *, token: str, password: str) -> User:
    """Use a "forgot password" link: set the new password; every log-in token
    and console session of the account ends.

    Raises Invalid `reset_link_invalid` (unknown, expired or used link, or the
    account is no longer active: not told apart), Invalid `weak_password` (the
    link stays usable).
    """
    invalid = Invalid("This link is invalid, expired or already used.", code="reset_link_invalid")
    now = utcnow()
    row = _open_link(session, PasswordResetToken, token, now, invalid)
    user = session.get(User, row.user_id)
    if user is None or user.status != "active":
        raise invalid
    passwords.check(password or "", login_email=user.login_email)
    _spend_link(session, PasswordResetToken, row.id, now, invalid)
    user.password_hash = rt.hasher.hash(password)
    for table in (AuthToken, ConsoleSession):
        session.execute(
            update(table)
            .where(table.user_id == user.id, table.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    commit(session, rt)
    return user


def _open_link(session: Session, table: Any, token: str, now: dt.datetime, invalid: Invalid) -> Any:
    """The row of a mailed single-use link (activation or reset) by its token;
    raises `invalid` for an unknown, used or expired one (not told apart)."""
    row = session.scalar(select(table).where(table.token_hash == digest(token or "")))
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise invalid
    return row


def _spend_link(
    session: Session, table: Any, row_id: int, now: dt.datetime, invalid: Invalid
) -> None:
    """Use the link once, even under concurrency: only one caller flips
    used_at; the others roll back and get `invalid`."""
    claimed = rowcount(
        session.execute(
            update(table).where(table.id == row_id, table.used_at.is_(None)).values(used_at=now)
        )
    )
    if claimed != 1:
        session.rollback()
        raise invalid


def _expire_unused(session: Session, table: Any, user_id: int, now: dt.datetime) -> None:
    """End every unused, unexpired link of `table` (activation or reset) of a user."""
    session.execute(
        update(table)
        .where(table.user_id == user_id, table.used_at.is_(None), table.expires_at > now)
        .values(expires_at=now)
    )


def check_credentials(
    session: Session, rt: Runtime, *, login_email: str, password: str, address: str | None
) -> User:
    """The person whose login email and password these are, whatever their status,
    under the brute-force limits (authz/workflows/throttle.py: the attempt is
    counted before the password is checked; everything is committed).

    Raises TooManyAttempts (this email or address is locked out), Unauthenticated
    `invalid_credentials` (unknown email or wrong password: not told apart).
    """
    now = utcnow()
    login = logins.normalize(login_email)
    keys = throttle.reserve(session, rt, login, address, now)
    user = find_by_login(session, login) if login else None
    person = user if user is not None and user.kind == "person" else None
    stored = person.password_hash if person else None
    session.commit()  # end the read: nothing is held while argon2 runs
    # The hash is verified whoever asks (a dummy one when nobody has this email),
    # so that the time taken does not tell a known email from an unknown one.
    if not rt.hasher.verify(stored, password or "") or person is None or stored is None:
        throttle.record_failure(session, rt, keys, now)
        raise Unauthenticated("Wrong login email or password.", code="invalid_credentials")
    if rt.hasher.needs_rehash(stored):
        person.password_hash = rt.hasher.hash(password)
    throttle.forget_login(session, keys)
    session.commit()  # the attempt is given back even if the caller refuses next
    return person


def active_person(
    session: Session, rt: Runtime, *, login_email: str, password: str, address: str | None
) -> User:
    """The active person these credentials are (check_credentials), the rule of
    every log-in: the API's bearer token and the console's session.

    Raises what check_credentials raises, and Forbidden `account_not_active`
    (right password, but pending / inactive / closed account)."""
    person = check_credentials(
        session, rt, login_email=login_email, password=password, address=address
    )
    if person.status != "active":
        raise Forbidden(
            f"This account is {person.status}: it cannot log in.", code="account_not_active"
        )
    return person


def log_in(
    session: Session, rt: Runtime, *, login_email: str, password: str, address: str | None
) -> tuple[str, AuthToken]:
    """Check the credentials; return a new bearer token (shown once) and its row.

    Raises TooManyAttempts, Unauthenticated `invalid_credentials` (see
    check_credentials), Forbidden `account_not_active` (right password, but
    pending / inactive / closed account).
    """
    person = active_person(session, rt, login_email=login_email, password=password, address=address)
    now = utcnow()
    token = new_token("at_")
    row = AuthToken(
        user_id=person.id,
        token_hash=digest(token),
        created_at=now,
        expires_at=now + dt.timedelta(seconds=rt.settings.token_ttl_seconds),
    )
    session.add(row)
    commit(session, rt)
    return token, row


def authenticate(session: Session, token: str) -> tuple[User, AuthToken] | None:
    """The active person behind a bearer token, or None (unknown, expired, revoked)."""
    row = session.scalar(select(AuthToken).where(AuthToken.token_hash == digest(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    user = session.get(User, row.user_id)
    if user is None or user.status != "active":
        return None
    return user, row


def log_out(session: Session, rt: Runtime, token_id: int) -> None:
    """Revoke the presented token at once."""
    session.execute(
        update(AuthToken)
        .where(AuthToken.id == token_id, AuthToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    commit(session, rt)


def apply_profile(user: User, changes: dict[str, Any]) -> None:
    """Set contact email, names or phone on `user` (never the login email), without
    committing. Raises Invalid (another field, or a bad contact email)."""
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise Invalid(
            "These fields cannot be changed.",
            errors={f: ["Cannot be changed."] for f in sorted(unknown)},
        )
    if "contact_email" in changes:
        changes["contact_email"] = normalize_email(changes["contact_email"], "contact_email")
    for field, value in changes.items():
        setattr(user, field, value.strip() if isinstance(value, str) else value)
    if user.phone == "":
        user.phone = None


def update_profile(session: Session, rt: Runtime, user: User, changes: dict[str, Any]) -> User:
    """Change one's contact email, names or phone (never the login email).

    Raises Forbidden `not_a_person` for a technical user: its profile is its
    structure's (its contact email is the principal's, docs/technical-users.md),
    which a stolen token must not redirect.
    """
    if user.kind != "person":
        raise Forbidden(
            "A technical user's profile is kept by its structure's principal.",
            code="not_a_person",
        )
    apply_profile(user, changes)
    commit(session, rt)
    return user
