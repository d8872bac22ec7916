"""Technical users: the accounts a structure's information system calls the API with.

Only the structure's principal manager creates them and resets their secret
(`technical_users.manage`, principal-only in policies/roles.yaml). A technical
user is attached to its structure with the role `technical`, which manages
nothing: it acts there through its subscriptions only. It has a generated login
and a generated secret; the secret is shown once (at creation or reset), stored
only as an argon2id hash, and expires after AUTHZ_TECHNICAL_SECRET_TTL_DAYS.
It never logs in as a person: it exchanges login and secret for a bearer token
with authenticate_technical().

Each workflow owns its transaction, like authz/workflows/accounts.py and
authz/workflows/attachments.py: it commits what it did, or raises and leaves nothing.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import Attachment, AuthToken, TechnicalCredential, User, utcnow

from ..db import rowcount
from ..errors import Forbidden, Invalid, NotFound, Unauthenticated
from ..pagination import Page, paginate
from ..roles import today
from ..runtime import Runtime
from ..security import digest, new_token
from . import throttle
from .access import authorize
from .accounts import find_by_login
from .records import bump_revision, commit, notify, record

MANAGE = "technical_users.manage"
SECRET_PREFIX = "ts_"  # noqa: S105 - the prefix of every secret, not a secret
# Logins are pseudo-emails under a reserved domain (RFC 2606): nothing is mailed there.
LOGIN_DOMAIN = "technical.invalid"
LABEL_MAX = 100


@dataclass(frozen=True)
class TechnicalUserInfo:
    """What the principal sees of a technical user (never its secret)."""

    user_id: int
    login: str
    label: str
    status: str
    secret_expires_at: dt.datetime
    secret_expired: bool
    created_at: dt.datetime
    created_by_id: int
    rotated_at: dt.datetime | None


def _clean_label(label: str) -> str:
    """The label, stripped. Raises Invalid `invalid_label` (empty, too long, or
    with control characters: it is written into the connection file)."""
    value = (label or "").strip()
    if not 1 <= len(value) <= LABEL_MAX or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise Invalid(
            f"The label must have 1 to {LABEL_MAX} printable characters.",
            code="invalid_label",
            errors={"label": [f"1 to {LABEL_MAX} printable characters."]},
        )
    return value


def _expiry(rt: Runtime, now: dt.datetime) -> dt.datetime:
    """When a secret issued at `now` expires (AUTHZ_TECHNICAL_SECRET_TTL_DAYS)."""
    return now + dt.timedelta(days=rt.settings.technical_secret_ttl_days)


def _info(user: User, credential: TechnicalCredential, now: dt.datetime) -> TechnicalUserInfo:
    """The principal's view of a technical user, expiry judged at `now`."""
    return TechnicalUserInfo(
        user_id=user.id,
        login=user.login_email,
        label=credential.label,
        status=user.status,
        secret_expires_at=credential.secret_expires_at,
        secret_expired=credential.secret_expires_at <= now,
        created_at=credential.created_at,
        created_by_id=credential.created_by_id,
        rotated_at=credential.rotated_at,
    )


def _credential(
    session: Session, structure_id: int, user_id: int, *, lock: bool = False
) -> TechnicalCredential:
    """The credential of technical user `user_id` on the structure, its row
    locked for update if `lock`. Raises NotFound (none on this structure)."""
    stmt = select(TechnicalCredential).where(
        TechnicalCredential.user_id == user_id, TechnicalCredential.structure_id == structure_id
    )
    credential = session.scalar(stmt.with_for_update() if lock else stmt)
    if credential is None:
        raise NotFound("No such technical user on this structure.")
    return credential


def create_technical_user(
    session: Session, rt: Runtime, actor: User, structure_id: int, *, label: str
) -> tuple[User, TechnicalCredential, str, str]:
    """The principal creates a technical user for the structure: an active
    account with a generated login (`<hex>@technical.invalid`, contact email
    the principal's), a validated whole-structure attachment with role
    `technical`, and a generated secret stored only hashed. Returns the user,
    its credential, the login and the secret (its only appearance).

    Raises NotFound (structure unknown or invisible), Forbidden
    `action_not_allowed` (not the principal, or the structure is inactive),
    Invalid `invalid_label`.
    """
    structure = authorize(session, rt, actor, structure_id, MANAGE)
    label = _clean_label(label)
    now = utcnow()
    login = f"{secrets.token_hex(8)}@{LOGIN_DOMAIN}"
    user = User(
        login_email=login,
        contact_email=actor.contact_email,
        first_name=label,
        last_name=structure.designation[:100],
        kind="technical",
        status="active",
        activated_at=now,
    )
    session.add(user)
    session.flush()
    session.add(
        Attachment(
            user_id=user.id,
            structure_id=structure.id,
            role="technical",
            status="validated",
            valid_from=today(),
            created_by_id=actor.id,
        )
    )
    secret = new_token(SECRET_PREFIX)
    credential = TechnicalCredential(
        user_id=user.id,
        structure_id=structure.id,
        label=label,
        secret_hash=rt.hasher.hash(secret),
        secret_expires_at=_expiry(rt, now),
        created_at=now,
        created_by_id=actor.id,
    )
    session.add(credential)
    record(
        session,
        action="technical_user.created",
        actor=actor,
        structure_id=structure.id,
        target_user_id=user.id,
        comment="Technical user created",
        after={
            "label": label,
            "login": login,
            "role": "technical",
            "secret_expires_at": credential.secret_expires_at.isoformat(),
        },
    )
    bump_revision(session, memberships=[(user.id, structure.id)])
    commit(session, rt)
    return user, credential, login, secret


def list_technical_users(
    session: Session, rt: Runtime, actor: User, structure_id: int, *, page: int, page_size: int
) -> Page:
    """The structure's technical users (principal only), oldest first: label,
    login, status, secret expiry, creation and last reset. Items are
    TechnicalUserInfo.

    Raises NotFound, Forbidden `action_not_allowed`.
    """
    authorize(session, rt, actor, structure_id, MANAGE)
    found = paginate(
        session,
        select(TechnicalCredential)
        .where(TechnicalCredential.structure_id == structure_id)
        .order_by(TechnicalCredential.created_at, TechnicalCredential.user_id),
        page=page,
        page_size=page_size,
    )
    users = {
        u.id: u
        for u in session.scalars(select(User).where(User.id.in_([c.user_id for c in found.items])))
    }
    now = utcnow()
    return Page(
        items=[_info(users[c.user_id], c, now) for c in found.items],
        page=found.page,
        page_size=found.page_size,
        total=found.total,
    )


def get_technical_user(
    session: Session, rt: Runtime, actor: User, structure_id: int, user_id: int
) -> TechnicalUserInfo:
    """One technical user of the structure (principal only).

    Raises NotFound (structure, or no such technical user of it), Forbidden.
    """
    authorize(session, rt, actor, structure_id, MANAGE)
    credential = _credential(session, structure_id, user_id)
    return _info(session.get_one(User, user_id), credential, utcnow())


def _principals(session: Session, structure_id: int) -> list[User]:
    """The structure's principal manager(s) (one, on an active structure)."""
    return list(
        session.scalars(
            select(User)
            .join(Attachment, Attachment.user_id == User.id)
            .where(
                Attachment.structure_id == structure_id,
                Attachment.role == "principal",
                Attachment.status == "validated",
            )
        )
    )


def reset_secret(
    session: Session, rt: Runtime, actor: User, structure_id: int, user_id: int, *, confirm: bool
) -> str:
    """The principal replaces a technical user's secret and returns the new one
    (its only appearance). The old secret stops working at once, every live
    token of the technical user is revoked, the expiry restarts, and the
    principal(s) are mailed that the structure's system must be updated.

    Raises NotFound (structure, or no such technical user of it), Forbidden
    `action_not_allowed`, Invalid `confirmation_required` (confirm is not true).
    """
    structure = authorize(session, rt, actor, structure_id, MANAGE)
    if confirm is not True:
        raise Invalid(
            "Resetting the secret cuts off the system using it: confirm it.",
            code="confirmation_required",
            errors={"confirm": ["Must be true."]},
        )
    # Locked: a concurrent authenticate_technical() either finishes first (its
    # token is then revoked below) or reads the new hash.
    credential = _credential(session, structure.id, user_id, lock=True)
    user = session.get_one(User, user_id)
    now = utcnow()
    rotated = credential.rotated_at
    before = {
        "secret_expires_at": credential.secret_expires_at.isoformat(),
        "rotated_at": rotated.isoformat() if rotated else None,
    }
    secret = new_token(SECRET_PREFIX)
    credential.secret_hash = rt.hasher.hash(secret)
    credential.secret_expires_at = _expiry(rt, now)
    credential.rotated_at = now
    revoked = rowcount(
        session.execute(
            update(AuthToken)
            .where(
                AuthToken.user_id == user_id,
                AuthToken.revoked_at.is_(None),
                AuthToken.expires_at > now,
            )
            .values(revoked_at=now)
        )
    )
    record(
        session,
        action="technical_user.secret_reset",
        actor=actor,
        structure_id=structure.id,
        target_user_id=user_id,
        comment="Secret reset",
        before=before,
        after={
            "secret_expires_at": credential.secret_expires_at.isoformat(),
            "rotated_at": now.isoformat(),
            "tokens_revoked": revoked,
        },
    )
    for principal in _principals(session, structure.id):
        notify(
            session,
            principal,
            f"Technical user secret reset — {structure.designation}",
            f'The secret of the technical user "{credential.label}" ({user.login_email}) '
            f"of {structure.designation} was reset on {now:%Y-%m-%d %H:%M} UTC.\n\n"
            f"The old secret no longer works and the tokens obtained with it were "
            f"revoked: update the connection information of the structure's "
            f"information system with the new secret now.\n\n"
            f"The new secret expires on {credential.secret_expires_at:%Y-%m-%d}.",
        )
    commit(session, rt)
    return secret


def authenticate_technical(
    session: Session, rt: Runtime, login: str, secret: str, address: str | None
) -> tuple[str, AuthToken]:
    """Exchange a technical user's login and secret for a bearer token (shown
    once) and its row. The token lives AUTHZ_TOKEN_TTL_SECONDS, never past the
    secret's expiry. Failures count toward the same lock-outs as person log-ins.

    Raises TooManyAttempts (login or address locked out), Unauthenticated
    `invalid_credentials` (unknown login, not a technical user, or wrong secret:
    not told apart), Unauthenticated `secret_expired`, Forbidden
    `account_not_active` (right secret, but the account is not active).
    """
    now = utcnow()
    login = (login or "").strip().lower()
    keys = throttle.reserve(session, rt, login, address, now)
    user = find_by_login(session, login) if login else None
    credential = None
    if user is not None and user.kind == "technical":
        # Shared lock: a concurrent reset_secret() waits for this token to exist
        # (and revokes it), or this reads the hash the reset wrote.
        credential = session.scalar(
            select(TechnicalCredential)
            .where(TechnicalCredential.user_id == user.id)
            .with_for_update(read=True)
        )
    stored = credential.secret_hash if credential else None
    if not rt.hasher.verify(stored, secret or "") or user is None or credential is None:
        throttle.record_failure(session, rt, keys, now)
        raise Unauthenticated("Wrong login or secret.", code="invalid_credentials")
    refusal: Unauthenticated | Forbidden | None = None
    if credential.secret_expires_at <= now:
        refusal = Unauthenticated(
            "This secret has expired: the structure's principal manager must reset it.",
            code="secret_expired",
        )
    elif user.status != "active":
        refusal = Forbidden(
            f"This account is {user.status}: it cannot log in.", code="account_not_active"
        )
    if refusal is not None:  # the right secret: the attempt is given back
        throttle.forget_login(session, keys)
        session.commit()
        raise refusal
    if rt.hasher.needs_rehash(credential.secret_hash):
        credential.secret_hash = rt.hasher.hash(secret)
    throttle.forget_login(session, keys)
    token = new_token("at_")
    expires = min(
        now + dt.timedelta(seconds=rt.settings.token_ttl_seconds), credential.secret_expires_at
    )
    row = AuthToken(user_id=user.id, token_hash=digest(token), created_at=now, expires_at=expires)
    session.add(row)
    commit(session, rt)
    return token, row


def connection_file(
    rt: Runtime, *, login: str, secret: str, expires_at: dt.datetime, label: str
) -> str:
    """The connection-information file of a technical user (.env style, with how
    to get a token). It holds the secret: it exists only in the answer to the
    creation or the reset."""
    base = rt.link_base()
    return (
        f'# Connection information of the technical user "{label}".\n'
        f"# The secret is shown only once: keep this file in your system's secret store.\n"
        f"# It expires on {expires_at.isoformat()}; the structure's principal manager\n"
        f"# resets it (the old one then stops working at once) and gives you the new one.\n"
        f"#\n"
        f"# Get a bearer token, then send it as 'Authorization: Bearer <access_token>':\n"
        f'#   curl -X POST "$AUTHZ_API_URL/v1/auth/technical-token" \\\n'
        f"#        -H 'Content-Type: application/json' \\\n"
        f'#        -d "{{\\"login\\": \\"$AUTHZ_TECHNICAL_LOGIN\\", '
        f'\\"secret\\": \\"$AUTHZ_TECHNICAL_SECRET\\"}}"\n'
        f"AUTHZ_API_URL={base}\n"
        f"AUTHZ_TECHNICAL_LOGIN={login}\n"
        f"AUTHZ_TECHNICAL_SECRET={secret}\n"
        f"AUTHZ_TECHNICAL_SECRET_EXPIRES_AT={expires_at.isoformat()}\n"
    )
