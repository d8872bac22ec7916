"""Invitations: a manager's direct attachment of an account that is not the
structure's to attach at once (docs/decisions.md, "Consent").

An invitation grants nothing. The decision index never reads this table, and
no attachment row exists until the person accepts: only then are their
attachments made, with the role, scope and dates of the invitation, in the
transaction that records "invitation.accepted", bumps the revision and mails
the structure's managers. The person may refuse it instead; a manager may
withdraw it while it is pending; it expires after AUTHZ_INVITATION_TTL_DAYS.

Each workflow owns its transaction. An invitation is decided at most once: its
status moves with a conditional UPDATE … WHERE status = 'pending' (the same
rule as request_flow.claim).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from models import (
    Invitation,
    InvitationService,
    Structure,
    User,
    utcnow,
)

from ..db import rowcount
from ..errors import Conflict, Invalid, NotFound
from ..pagination import Page, paginate
from ..runtime import Runtime
from .access import authorize, require_open_structure, tell_managers
from .records import bump_revision, commit, notify, record

LIST = "users.list"
WITHDRAW = "attachments.delete"
NOT_FOUND = "No such invitation."


def effective_status(invitation: Invitation, now: dt.datetime | None = None) -> str:
    """The status to show: a pending invitation past its expiry is `expired`
    (`authz maintenance` writes it; until then it is already refused as such)."""
    if invitation.status == "pending" and invitation.expires_at <= (now or utcnow()):
        return "expired"
    return invitation.status


def _expire_stale(session: Session, user_id: int, structure_id: int, now: dt.datetime) -> None:
    """Mark the pending invitations of (user, structure) past their expiry as
    expired, so a new one may be made (one pending invitation per pair)."""
    session.execute(
        update(Invitation)
        .where(
            Invitation.user_id == user_id,
            Invitation.structure_id == structure_id,
            Invitation.status == "pending",
            Invitation.expires_at <= now,
        )
        .values(status="expired")
        .execution_options(synchronize_session=False)
    )


def invite(
    session: Session,
    rt: Runtime,
    actor: User,
    structure: Structure,
    user: User,
    *,
    role: str,
    scopes: Sequence[int | None],
    valid_from: dt.date,
    valid_until: dt.date | None,
    comment: str | None,
) -> Invitation:
    """Invite `user` to `structure` with this role, scope and dates (called by
    attachments.attach_directly, which checked the manager's right and the
    input), mail them how to answer, and write "invitation.created". Commits.

    Raises Conflict `invitation_pending` (one is already pending for them there).
    """
    now = utcnow()
    _expire_stale(session, user.id, structure.id, now)
    if session.scalar(
        select(Invitation.id).where(
            Invitation.user_id == user.id,
            Invitation.structure_id == structure.id,
            Invitation.status == "pending",
        )
    ):
        raise Conflict(
            "An invitation to this structure is already pending for this person; "
            "withdraw it first to change it.",
            code="invitation_pending",
        )
    invitation = Invitation(
        user_id=user.id,
        structure_id=structure.id,
        role=role,
        whole_structure=scopes == [None],
        valid_from=valid_from,
        valid_until=valid_until,
        comment=comment,
        status="pending",
        created_at=now,
        expires_at=now + dt.timedelta(days=rt.settings.invitation_ttl_days),
        created_by_id=actor.id,
        services=[InvitationService(service_id=s) for s in scopes if s is not None],
    )
    session.add(invitation)
    session.flush()
    record(
        session,
        action="invitation.created",
        actor=actor,
        structure_id=structure.id,
        target_user_id=user.id,
        comment="Invited",
        after=_summary(invitation),
    )
    base = rt.link_base()
    notify(
        session,
        user,
        f"Invitation to join {structure.designation}",
        f"{actor.first_name} {actor.last_name}, a manager of {structure.designation}, "
        f"invites you to join it (role: {role}, from {valid_from.isoformat()}).\n"
        + (f"\nTheir message: {comment}\n" if comment else "")
        + "\nNothing changes for your account unless you accept. Answer before "
        f"{invitation.expires_at:%Y-%m-%d}, logged in:\n\n"
        f"  accept:  curl -X POST {base}/v1/me/invitations/{invitation.id}/acceptance "
        "-H 'Authorization: Bearer <token>'\n"
        f"  refuse:  curl -X POST {base}/v1/me/invitations/{invitation.id}/refusal "
        "-H 'Authorization: Bearer <token>'\n\n"
        "If you do not know this structure, refuse it or let it expire.",
    )
    commit(session, rt)
    return invitation


def _summary(invitation: Invitation) -> dict[str, object]:
    return {
        "invitation_id": invitation.id,
        "role": invitation.role,
        "whole_structure": invitation.whole_structure,
        "service_ids": [s.service_id for s in invitation.services],
        "valid_from": invitation.valid_from.isoformat(),
        "valid_until": invitation.valid_until.isoformat() if invitation.valid_until else None,
        "expires_at": invitation.expires_at.isoformat(),
    }


# --- the person invited -----------------------------------------------------------


def list_mine(
    session: Session, actor: User, *, status: str | None = None, page: int, page_size: int
) -> Page:
    """The actor's invitations, newest first, optionally of one (effective) status."""
    stmt = _with_status(select(Invitation).where(Invitation.user_id == actor.id), status)
    return paginate(
        session,
        stmt.order_by(Invitation.created_at.desc(), Invitation.id.desc()),
        page=page,
        page_size=page_size,
    )


def designations(session: Session, invitations: Sequence[Invitation]) -> dict[int, str]:
    """The designation of each structure the person is invited to (by its id):
    an invitation names its structure to the person invited."""
    ids = {i.structure_id for i in invitations}
    if not ids:
        return {}
    rows = session.execute(select(Structure.id, Structure.designation).where(Structure.id.in_(ids)))
    return dict(rows.all())


def _with_status(stmt: Select[Any], status: str | None) -> Select[Any]:
    now = utcnow()
    if status == "pending":
        return stmt.where(Invitation.status == "pending", Invitation.expires_at > now)
    if status == "expired":
        return stmt.where(
            (Invitation.status == "expired")
            | ((Invitation.status == "pending") & (Invitation.expires_at <= now))
        )
    if status:
        return stmt.where(Invitation.status == status)
    return stmt


def _claim(session: Session, invitation: Invitation, actor: User, status: str) -> None:
    """Move the pending, unexpired invitation to `status`, at most once.

    Raises Conflict `invitation_expired`, `invitation_processed`.
    """
    now = utcnow()
    if invitation.status == "pending" and invitation.expires_at <= now:
        raise Conflict("This invitation has expired.", code="invitation_expired")
    claimed = rowcount(
        session.execute(
            update(Invitation)
            .where(
                Invitation.id == invitation.id,
                Invitation.status == "pending",
                Invitation.expires_at > now,
            )
            .values(status=status, decided_at=now, decided_by_id=actor.id)
            .execution_options(synchronize_session=False)
        )
    )
    if claimed != 1:
        session.rollback()
        raise Conflict("This invitation was already answered.", code="invitation_processed")
    session.refresh(invitation)


def _record(
    session: Session,
    invitation: Invitation,
    actor: User | None,
    action: str,
    comment: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """The history entry of what became of an invitation, on its structure,
    about the person invited."""
    record(
        session,
        action=action,
        actor=actor,
        structure_id=invitation.structure_id,
        target_user_id=invitation.user_id,
        comment=comment,
        before=before,
        after={**(after or {}), "invitation_id": invitation.id},
    )


def _mine(session: Session, actor: User, invitation_id: int) -> Invitation:
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.user_id != actor.id:
        raise NotFound(NOT_FOUND)
    return invitation


def accept(session: Session, rt: Runtime, actor: User, invitation_id: int) -> Invitation:
    """The invited person accepts: their attachments to the structure are made
    validated with the invitation's role, scope and dates (as a direct
    attachment would have), the structure's default spaces become a
    subscription request, "invitation.accepted" is written, the revision moves
    and the structure's managers are mailed. Commits.

    Raises NotFound (unknown, or another person's), Conflict
    (`invitation_processed`, `invitation_expired`, `structure_inactive`,
    `invitation_outdated` — a service of it is no longer active —,
    `user_is_principal`).
    """
    # A cycle: attachments invites through this module, this one grants through it.
    from .attachments import default_spaces_request, grant, resolve_scope  # noqa: PLC0415

    invitation = _mine(session, actor, invitation_id)
    structure = session.get_one(Structure, invitation.structure_id)
    if invitation.status == "pending":
        require_open_structure(structure)
    try:
        scopes = resolve_scope(
            session,
            structure.id,
            whole_structure=invitation.whole_structure,
            service_ids=[s.service_id for s in invitation.services],
        )
    except Invalid as exc:
        raise Conflict(
            "A service of this invitation is no longer active: ask the structure's "
            "managers for a new one.",
            code="invitation_outdated",
        ) from exc
    _claim(session, invitation, actor, "accepted")
    inviter = session.get(User, invitation.created_by_id)
    change = grant(
        session,
        inviter or actor,
        actor,
        structure,
        scopes,
        role=invitation.role,
        valid_from=invitation.valid_from,
        valid_until=invitation.valid_until,
    )
    default_spaces_request(session, rt, actor, structure, scopes)
    _record(
        session,
        invitation,
        actor,
        "invitation.accepted",
        "Invitation accepted",
        before=change["before"],
        after=change["after"],
    )
    bump_revision(session, memberships=[(actor.id, structure.id)])
    tell_managers(
        session,
        structure,
        actor,
        f"Invitation to {structure.designation} accepted",
        f"{actor.first_name} {actor.last_name} ({actor.login_email}) accepted the "
        f"invitation to join {structure.designation} (role: {invitation.role}).",
    )
    commit(session, rt)
    return invitation


def refuse(session: Session, rt: Runtime, actor: User, invitation_id: int) -> Invitation:
    """The invited person refuses: nothing is granted, "invitation.refused" is
    written and the structure's managers are mailed. Commits.

    Raises NotFound (unknown, or another person's), Conflict
    (`invitation_processed`, `invitation_expired`).
    """
    invitation = _mine(session, actor, invitation_id)
    structure = session.get_one(Structure, invitation.structure_id)
    _claim(session, invitation, actor, "refused")
    _record(session, invitation, actor, "invitation.refused", "Invitation refused")
    tell_managers(
        session,
        structure,
        actor,
        f"Invitation to {structure.designation} refused",
        f"{actor.first_name} {actor.last_name} ({actor.login_email}) refused the "
        f"invitation to join {structure.designation}.",
    )
    commit(session, rt)
    return invitation


# --- the structure's managers -----------------------------------------------------


def list_for_structure(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    *,
    status: str | None = None,
    page: int,
    page_size: int,
) -> Page:
    """The invitations of a structure, newest first (managers: users.list).

    Raises NotFound (structure unknown or invisible), Forbidden.
    """
    authorize(session, rt, actor, structure_id, LIST)
    stmt = _with_status(select(Invitation).where(Invitation.structure_id == structure_id), status)
    return paginate(
        session,
        stmt.order_by(Invitation.created_at.desc(), Invitation.id.desc()),
        page=page,
        page_size=page_size,
    )


def withdraw(
    session: Session, rt: Runtime, actor: User, structure_id: int, invitation_id: int
) -> Invitation:
    """A manager withdraws a pending invitation of their structure; the person
    is told. Commits.

    Raises NotFound (structure, or no such invitation of it), Forbidden,
    Conflict `invitation_processed` / `invitation_expired`.
    """
    structure = authorize(session, rt, actor, structure_id, WITHDRAW)
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.structure_id != structure.id:
        raise NotFound(NOT_FOUND)
    _claim(session, invitation, actor, "withdrawn")
    _record(session, invitation, actor, "invitation.withdrawn", "Invitation withdrawn")
    user = session.get(User, invitation.user_id)
    if user is not None:
        notify(
            session,
            user,
            f"Invitation to {structure.designation} withdrawn",
            f"The managers of {structure.designation} withdrew their invitation to join it.",
        )
    commit(session, rt)
    return invitation


def expire(session: Session, rt: Runtime, now: dt.datetime | None = None) -> int:
    """Mark the pending invitations past their expiry as expired, each with its
    history entry (for `authz maintenance`). Returns how many. Commits."""
    now = now or utcnow()
    stale = list(
        session.scalars(
            select(Invitation).where(Invitation.status == "pending", Invitation.expires_at <= now)
        )
    )
    for invitation in stale:
        invitation.status = "expired"
        _record(session, invitation, None, "invitation.expired", "Invitation expired")
    commit(session, rt)
    return len(stale)
