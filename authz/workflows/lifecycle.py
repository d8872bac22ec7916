"""Leaving the principal role, deactivating and reactivating one's account,
closing accounts after 60 days, and the operator's appointment of a principal
for a structure left without one.

An active structure never has two principals (a partial unique index enforces
it), and a principal only steps down by naming a successor in the same
transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import Attachment, AuthToken, Structure, User, utcnow

from ..errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from ..pagination import Page, paginate
from ..roles import in_force_condition, today
from ..runtime import Runtime
from . import accounts, throttle
from .access import authorize, effective_attachments, role_on
from .records import bump_revision, commit, notify, record

REACTIVATION_DAYS = 60


def _find_person(session: Session, *, user_id: int | None, login_email: str | None) -> User:
    if (user_id is None) == (login_email is None):
        raise Invalid(
            "Name the successor by user_id or by login_email.",
            code="invalid_user",
            errors={"user_id": ["One of user_id, login_email."]},
        )
    user = (
        session.get(User, user_id)
        if user_id is not None
        else accounts.find_by_login(session, login_email or "")
    )
    if user is None:
        raise NotFound("No such user.")
    if user.kind != "person" or user.status != "active":
        raise Invalid(
            "The new principal must be an active person.",
            code="successor_not_eligible",
            errors={"successor": ["Not an active person."]},
        )
    return user


def _principal_rows(session: Session, structure_id: int) -> list[Attachment]:
    return list(
        session.scalars(
            select(Attachment).where(
                Attachment.structure_id == structure_id,
                Attachment.role == "principal",
                Attachment.status == "validated",
            )
        )
    )


def _hand_over(
    session: Session,
    structure: Structure,
    new: User,
    actor: User | None,
    comment: str | None,
    action: str,
) -> None:
    """Make `new` the only principal; the former one (if any) stays attached to
    the whole structure as a simple user. Writes history, bumps the revision."""
    former = _principal_rows(session, structure.id)
    if any(row.user_id == new.id for row in former):
        raise Conflict("This user is already the principal manager.", code="already_principal")
    for row in former:
        session.execute(
            update(Attachment)
            .where(
                Attachment.user_id == row.user_id,
                Attachment.structure_id == structure.id,
                Attachment.status == "validated",
            )
            .values(role="simple", updated_at=utcnow())
        )
    session.flush()  # the former principal is demoted before the new one is promoted
    rows = {
        a.service_id: a
        for a in session.scalars(
            select(Attachment).where(
                Attachment.user_id == new.id, Attachment.structure_id == structure.id
            )
        )
    }
    whole = rows.pop(None, None)
    if whole is None:
        whole = Attachment(
            user_id=new.id,
            structure_id=structure.id,
            service_id=None,
            created_by_id=actor.id if actor else None,
        )
        session.add(whole)
    whole.role, whole.status = "principal", "validated"
    whole.valid_from = min(whole.valid_from or today(), today())
    whole.valid_until = None
    for row in rows.values():  # the principal holds the whole structure
        if row.status in ("validated", "pending"):
            row.status = "deleted"
    session.flush()
    record(
        session,
        action=action,
        actor=actor,
        structure_id=structure.id,
        target_user_id=new.id,
        comment=comment or "Principal designated",
        before={"principal_user_ids": sorted({r.user_id for r in former})},
        after={"principal_user_id": new.id, "former_principals_now": "simple" if former else None},
    )
    bump_revision(
        session, memberships=[(new.id, structure.id), *((r.user_id, structure.id) for r in former)]
    )
    notify(
        session,
        new,
        f"You are the principal manager of {structure.designation}",
        f"You are now the principal manager of {structure.designation}.",
    )


def designate_principal(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    *,
    user_id: int | None = None,
    login_email: str | None = None,
    comment: str | None = None,
) -> Structure:
    """The principal names their successor (an active person, attached or not);
    the former principal stays attached as a simple user. One transaction.

    Raises NotFound, Forbidden (not the principal), Conflict (`already_principal`),
    Invalid (`successor_not_eligible`).
    """
    structure = authorize(session, rt, actor, structure_id, "principal.designate")
    new = _find_person(session, user_id=user_id, login_email=login_email)
    _hand_over(session, structure, new, actor, comment, "principal.designated")
    commit(session, rt)
    return structure


def appoint_principal(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    *,
    user_id: int | None = None,
    login_email: str | None = None,
    comment: str | None = None,
) -> Structure:
    """The platform operator appoints a principal for a structure that has none
    able to act (none validated, or only an inactive or closed account).

    Raises Forbidden `operator_only`, NotFound, Conflict `has_principal`, Invalid.
    """
    if actor.platform_role != "operator" or actor.status != "active":
        raise Forbidden("Only the platform operator appoints principals.", code="operator_only")
    structure = session.get(Structure, structure_id)
    if structure is None:
        raise NotFound("No such structure.")
    if structure_id not in orphan_structure_ids(session, [structure_id]):
        raise Conflict(
            "This structure has an active principal manager; only they can hand the role over.",
            code="has_principal",
        )
    new = _find_person(session, user_id=user_id, login_email=login_email)
    _hand_over(
        session,
        structure,
        new,
        actor,
        comment or "Principal appointed by the operator",
        "principal.appointed",
    )
    commit(session, rt)
    return structure


def change_principal(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    *,
    user_id: int | None = None,
    login_email: str | None = None,
    comment: str | None = None,
) -> Structure:
    """POST …/principal: the operator (when not a member of the structure)
    appoints one for a structure left without an acting principal; a member
    designates their successor (see both)."""
    change = (
        appoint_principal
        if actor.platform_role == "operator" and role_on(session, actor, structure_id) is None
        else designate_principal
    )
    return change(
        session, rt, actor, structure_id, user_id=user_id, login_email=login_email, comment=comment
    )


def orphan_structure_ids(session: Session, only: Iterable[int] | None = None) -> set[int]:
    """Ids of the active structures with no principal able to act today (a
    validated principal attachment in force, held by an active account), among
    `only` when given. The operator appoints principals for these; the review
    report lists them."""
    acting = (
        select(Attachment.structure_id)
        .join(User, User.id == Attachment.user_id)
        .where(
            Attachment.role == "principal",
            in_force_condition(today()),
            User.status == "active",
        )
    )
    stmt = select(Structure.id).where(Structure.status == "active", Structure.id.not_in(acting))
    if only is not None:
        stmt = stmt.where(Structure.id.in_(list(only)))
    return set(session.scalars(stmt))


def structures_without_principal(
    session: Session, actor: User, *, page: int, page_size: int
) -> Page:
    """For the operator: active structures left without an acting principal."""
    if actor.platform_role != "operator":
        raise Forbidden("Only the platform operator sees this list.", code="operator_only")
    ids = orphan_structure_ids(session)
    return paginate(
        session,
        select(Structure).where(Structure.id.in_(ids)).order_by(Structure.id),
        page=page,
        page_size=page_size,
    )


@dataclass(frozen=True)
class Successor:
    structure_id: int
    user_id: int | None = None
    login_email: str | None = None


def deactivate_self(
    session: Session,
    rt: Runtime,
    actor: User,
    *,
    password: str,
    successors: list[Successor],
    address: str | None = None,
) -> User:
    """Deactivate one's own account. A principal names a successor for EVERY
    structure they lead, in the same call; structures run through the state's
    central pipeline cannot be left this way. The account grants nothing from
    now on and can be reactivated by its owner within 60 days. The password is
    checked under the log-in's brute-force limits (its login and `address`).

    Raises TooManyAttempts, Unauthenticated (wrong password), Conflict
    `successors_required` (missing ones listed) / `centrally_managed`, Invalid
    (a successor for a structure the actor does not lead, or not eligible).
    """
    now = utcnow()
    keys = throttle.reserve(session, rt, actor.login_email, address, now)
    if not rt.hasher.verify(actor.password_hash, password or ""):
        throttle.record_failure(session, rt, keys, now)
        raise Unauthenticated("Wrong password.", code="invalid_credentials")
    throttle.forget_login(session, keys)
    session.commit()  # the attempt is given back even if a check below refuses
    led = {
        row.structure_id
        for row in session.scalars(
            select(Attachment).where(
                Attachment.user_id == actor.id,
                Attachment.role == "principal",
                Attachment.status == "validated",
            )
        )
    }
    given = {s.structure_id: s for s in successors}
    extra = set(given) - led
    if extra:
        raise Invalid(
            f"You are not the principal of {sorted(extra)}.",
            code="not_principal",
            errors={"successors": [f"Not led by you: {sorted(extra)}"]},
        )
    structures = {s.id: s for s in session.scalars(select(Structure).where(Structure.id.in_(led)))}
    central = sorted(sid for sid, s in structures.items() if s.centrally_managed)
    if central:
        raise Conflict(
            "Structures managed through the state's central pipeline cannot be "
            f"left by deactivating your account: {central}.",
            code="centrally_managed",
            extra={"structure_ids": central},
        )
    missing = sorted(led - set(given))
    if missing:
        raise Conflict(
            "Name a new principal manager for every structure you lead.",
            code="successors_required",
            extra={"structure_ids": missing},
        )
    for sid, successor in sorted(given.items()):
        new = _find_person(session, user_id=successor.user_id, login_email=successor.login_email)
        if new.id == actor.id:
            raise Invalid("The successor cannot be yourself.", code="successor_not_eligible")
        _hand_over(
            session,
            structures[sid],
            new,
            actor,
            "Principal designated on leaving",
            "principal.designated",
        )
    actor.status, actor.deactivated_at = "inactive", utcnow()
    session.execute(
        update(AuthToken)
        .where(AuthToken.user_id == actor.id, AuthToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    attached = set(
        session.scalars(
            select(Attachment.structure_id).where(effective_attachments(actor.id, today()))
        )
    )
    for sid in sorted(attached):
        record(
            session,
            action="account.deactivated",
            actor=actor,
            structure_id=sid,
            target_user_id=actor.id,
            comment="Account deactivated by its owner",
        )
    bump_revision(session, users=[actor.id])
    notify(
        session,
        actor,
        "Your account is deactivated",
        f"Your account is deactivated. You can reactivate it within {REACTIVATION_DAYS} "
        "days; after that it is closed.",
    )
    commit(session, rt)
    return actor


def reactivate_self(
    session: Session, rt: Runtime, *, login_email: str, password: str, address: str | None
) -> User:
    """The owner of an account deactivated less than 60 days ago reactivates it
    with their password (the same brute-force limits as log-in apply).

    Raises TooManyAttempts, Unauthenticated `invalid_credentials`, Conflict
    `not_inactive` / `reactivation_expired`.
    """
    user = accounts.check_credentials(
        session, rt, login_email=login_email, password=password, address=address
    )
    if user.status != "inactive" or user.deactivated_at is None:
        raise Conflict("This account is not deactivated.", code="not_inactive")
    if utcnow() - user.deactivated_at > dt.timedelta(days=REACTIVATION_DAYS):
        raise Conflict(
            f"This account was deactivated more than {REACTIVATION_DAYS} days "
            "ago; it can no longer be reactivated.",
            code="reactivation_expired",
        )
    user.status, user.deactivated_at = "active", None
    for sid in sorted(
        set(
            session.scalars(
                select(Attachment.structure_id).where(effective_attachments(user.id, today()))
            )
        )
    ):
        record(
            session,
            action="account.reactivated",
            actor=user,
            structure_id=sid,
            target_user_id=user.id,
            comment="Account reactivated by its owner",
        )
    bump_revision(session, users=[user.id])
    commit(session, rt)
    return user


def close_expired_accounts(session: Session, rt: Runtime, now: dt.datetime | None = None) -> int:
    """Close the accounts deactivated more than 60 days ago (for `authz
    maintenance`). Returns how many were closed. Commits."""
    now = now or utcnow()
    expired = list(
        session.scalars(
            select(User).where(
                User.status == "inactive",
                User.deactivated_at < now - dt.timedelta(days=REACTIVATION_DAYS),
            )
        )
    )
    for user in expired:
        user.status, user.closed_at = "closed", now
        record(
            session,
            action="account.closed",
            actor=None,
            structure_id=None,
            target_user_id=user.id,
            comment="Closed 60 days after deactivation",
        )
    if expired:
        bump_revision(session, users=[u.id for u in expired])
    commit(session, rt)
    return len(expired)
