"""Attachments of users to structures: requests (ask, list, open, validate,
refuse — unit and bulk), direct attachment by a manager (or the invitation it
becomes, authz/workflows/invitations.py), removal, and leaving a structure.

Each workflow owns its transaction: the state change, the grants (attachment
rows, revision bump with its change log), the history entry and the mail are
committed together or not at all. A request is processed at most once: the
status moves with a conditional UPDATE … WHERE status = 'pending'.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import (
    Attachment,
    AttachmentRequest,
    AttachmentRequestService,
    Invitation,
    Service,
    Structure,
    Subscription,
    SubscriptionRequest,
    SubscriptionRequestLine,
    User,
    utcnow,
)

from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..pagination import Page
from ..roles import today, validated_role
from ..runtime import Runtime
from . import invitations
from . import request_flow as flow
from .access import authorize, managers_of, require_open_structure, tell_managers
from .accounts import find_by_login
from .records import bump_revision, commit, notify, record
from .service_refs import ServiceRef, resolve_all
from .users import Holding, holding
from .withdrawal import scope_names, withdraw

REQUESTABLE_ROLES = ("secondary", "simple")


# --- shared helpers -------------------------------------------------------------


def _structure_services(session: Session, structure_id: int) -> dict[int, Service]:
    return {
        s.id: s
        for s in session.scalars(select(Service).where(Service.structure_id == structure_id))
    }


def resolve_scope(
    session: Session,
    structure_id: int,
    *,
    whole_structure: bool,
    service_ids: Iterable[ServiceRef] | None,
) -> list[int | None]:
    """The attachment scopes asked for: [None] for the whole structure, else the
    given services (by id or by code, service_refs.py), which must be ACTIVE
    services of that structure.

    Raises Invalid `invalid_scope` / `unknown_service`.
    """
    refs = list(service_ids or [])
    if whole_structure:
        if refs:
            raise Invalid(
                "Ask for the whole structure or for services, not both.",
                code="invalid_scope",
                errors={"service_ids": ["Must be empty for the whole structure."]},
            )
        return [None]
    if not refs:
        raise Invalid(
            "Name at least one service, or ask for the whole structure.",
            code="invalid_scope",
            errors={"service_ids": ["At least one service."]},
        )
    found, unknown_codes = resolve_all(session, structure_id, refs)
    services = _structure_services(session, structure_id)
    bad: list[int | str] = [i for i in found if i not in services or not services[i].active]
    bad += unknown_codes
    if bad:
        raise Invalid(
            f"Not active services of this structure: {bad}.",
            code="unknown_service",
            errors={"service_ids": [f"Unknown or inactive: {bad}."]},
        )
    return list(found)


def start_date(valid_from: dt.date | None) -> dt.date:
    """The start of an attachment a manager grants: today (UTC) by default,
    never in the past — a back-dated right would claim a past nobody decided.

    Raises Invalid `start_in_past`.
    """
    start = today()
    if valid_from is not None and valid_from < start:
        raise Invalid(
            f"The start date {valid_from.isoformat()} is in the past; "
            f"give today ({start.isoformat()}) or a later date.",
            code="start_in_past",
            errors={"valid_from": ["Today or later."]},
        )
    return valid_from or start


def existing_rows(
    session: Session, user_id: int, structure_id: int
) -> dict[int | None, Attachment]:
    return {
        a.service_id: a
        for a in session.scalars(
            select(Attachment).where(
                Attachment.user_id == user_id, Attachment.structure_id == structure_id
            )
        )
    }


def grant(
    session: Session,
    actor: User,
    user: User,
    structure: Structure,
    scopes: list[int | None],
    *,
    role: str,
    valid_from: dt.date,
    valid_until: dt.date | None,
) -> dict[str, Any]:
    """Make the user's attachments on `scopes` validated with `role` (and every
    other validated attachment of theirs on the structure carry the same role).
    Returns a before/after summary for the history."""
    rows = existing_rows(session, user.id, structure.id)
    if validated_role(rows.values()) == "principal":
        raise Conflict(
            "This user is the structure's principal manager; use the "
            "principal transfer to change their role.",
            code="user_is_principal",
        )
    before = summary(rows)
    for scope in scopes:
        row = rows.get(scope)
        if row is None:
            row = Attachment(
                user_id=user.id, structure_id=structure.id, service_id=scope, created_by_id=actor.id
            )
            session.add(row)
            rows[scope] = row
        row.role, row.status = role, "validated"
        row.valid_from, row.valid_until = valid_from, valid_until
    for row in rows.values():
        if row.status == "validated":
            row.role = role
    session.flush()
    return {"before": before, "after": summary(rows)}


def summary(rows: dict[int | None, Attachment]) -> dict[str, Any]:
    return {
        "attachments": [
            {
                "service_id": r.service_id,
                "role": r.role,
                "status": r.status,
                "valid_from": r.valid_from.isoformat() if r.valid_from else None,
                "valid_until": r.valid_until.isoformat() if r.valid_until else None,
            }
            for r in sorted(rows.values(), key=lambda r: r.service_id or 0)
        ]
    }


def default_spaces_request(
    session: Session, rt: Runtime, user: User, structure: Structure, scopes: list[int | None]
) -> SubscriptionRequest | None:
    """The structure's settings may name default spaces for new users: ask for
    them (consultation) in a subscription request, for the attached scopes."""
    opened = {(o.space_code, o.service_id) for o in structure.opened_spaces}
    lines: list[SubscriptionRequestLine] = []
    for default in structure.default_spaces:
        entry = rt.policies.space(default.space_code)
        if entry is None or (entry.public_only and structure.kind != "public"):
            continue
        lines.extend(
            SubscriptionRequestLine(
                space_code=default.space_code, service_id=scope, level="consult"
            )
            for scope in scopes
            if (default.space_code, None) in opened or (default.space_code, scope) in opened
        )
    if not lines:
        return None
    req = SubscriptionRequest(
        user_id=user.id,
        structure_id=structure.id,
        lines=lines,
        origin="default_spaces",
        status="pending",
        comment="Default spaces of the structure",
    )
    session.add(req)
    return req


# --- requests by users ------------------------------------------------------------


def create_request(
    session: Session,
    rt: Runtime,
    actor: User,
    *,
    structure_id: int,
    whole_structure: bool,
    service_ids: list[int] | None = None,
    comment: str | None = None,
) -> AttachmentRequest:
    """A person asks to be attached to a structure (whole, or some services).

    Raises NotFound (unknown structure), Conflict `structure_inactive` /
    `request_pending` (one pending request per structure), Invalid.
    """
    if actor.kind != "person":
        raise Forbidden("Technical users cannot ask for attachments.", code="action_not_allowed")
    structure = session.get(Structure, structure_id)
    if structure is None:
        raise NotFound("No such structure.")
    require_open_structure(structure)
    scopes = resolve_scope(
        session, structure_id, whole_structure=whole_structure, service_ids=service_ids
    )
    if session.scalar(
        select(AttachmentRequest.id).where(
            AttachmentRequest.user_id == actor.id,
            AttachmentRequest.structure_id == structure_id,
            AttachmentRequest.status == "pending",
        )
    ):
        raise Conflict(
            "You already have a pending request on this structure.", code="request_pending"
        )
    req = AttachmentRequest(
        user_id=actor.id,
        structure_id=structure_id,
        whole_structure=whole_structure,
        comment=comment,
        status="pending",
        services=[AttachmentRequestService(service_id=s) for s in scopes if s is not None],
    )
    session.add(req)
    rows = existing_rows(session, actor.id, structure_id)
    for scope in scopes:
        row = rows.get(scope)
        if row is None:
            session.add(
                Attachment(
                    user_id=actor.id,
                    structure_id=structure_id,
                    service_id=scope,
                    role="simple",
                    status="pending",
                    valid_from=today(),
                    created_by_id=actor.id,
                )
            )
        elif row.status != "validated":
            row.status = "pending"
    session.flush()
    record(
        session,
        action="attachment_request.created",
        actor=actor,
        structure_id=structure_id,
        target_user_id=actor.id,
        request_kind="attachment",
        request_id=req.id,
        comment=comment,
        after={"whole_structure": whole_structure, "service_ids": [s for s in scopes if s]},
    )
    tell_managers(
        session,
        structure,
        actor,
        f"New attachment request on {structure.designation}",
        f"{actor.first_name} {actor.last_name} ({actor.login_email}) asks to be attached to "
        f"{structure.designation} ({scope_names(session, scopes)})."
        + (f"\n\nTheir comment: {comment}" if comment else "")
        + f"\n\nOpen it: GET /v1/attachment-requests/{req.id}",
    )
    commit(session, rt)
    return req


@dataclass(frozen=True)
class ServiceStatus:
    service: Service
    status: str  # pending, validated, deactivated, refused, deleted or none
    preselected: bool


@dataclass(frozen=True)
class RequestDetail:
    request: AttachmentRequest
    structure: Structure
    requester: User
    whole_structure_status: str
    services: list[ServiceStatus]


def list_requests(session: Session, rt: Runtime, actor: User, **filters: Any) -> Page:
    """Attachment requests the actor may see (see request_flow.list_requests)."""
    return flow.list_requests(session, rt, actor, AttachmentRequest, **filters)


def request_detail(session: Session, rt: Runtime, actor: User, request_id: int) -> RequestDetail:
    """A request with the structure, the requester, and for every ACTIVE service
    the requester's current status on it; `preselected` marks the services the
    guide pre-checks for validation (pending and validated)."""
    req = flow.get_request(session, rt, actor, AttachmentRequest, request_id)
    rows = existing_rows(session, req.user_id, req.structure_id)
    services = [s for s in _structure_services(session, req.structure_id).values() if s.active]
    statuses = []
    for svc in sorted(services, key=lambda s: s.code):
        status = rows[svc.id].status if svc.id in rows else "none"
        statuses.append(ServiceStatus(svc, status, status in ("pending", "validated")))
    whole = rows[None].status if None in rows else "none"
    return RequestDetail(
        req,
        session.get_one(Structure, req.structure_id),
        session.get_one(User, req.user_id),
        whole,
        statuses,
    )


# --- processing by managers -------------------------------------------------------


@dataclass(frozen=True)
class Validated:
    """A validated request and what its requester now holds on the structure
    (not only what was asked: services validated earlier stay). Reads as the
    request for every other attribute."""

    request: AttachmentRequest
    attachment: Holding

    def __getattr__(self, name: str) -> Any:
        return getattr(self.request, name)


def validate_request(
    session: Session,
    rt: Runtime,
    actor: User,
    request_id: int,
    *,
    role: str | None = None,
    whole_structure: bool | None = None,
    service_ids: list[int] | None = None,
    valid_from: dt.date | None = None,
    comment: str | None = None,
) -> Validated:
    """Validate a pending request, optionally changing the role (secondary or
    simple; default: the requester's current role on the structure, simple for
    a newcomer) and the scope (default: the requested one). The user's
    attachments become validated from `valid_from` (today by default); default
    spaces of the structure become a subscription request; the user is mailed.
    Returns the request with what the user now holds there.

    Raises NotFound, Forbidden (`action_not_allowed`, `own_request`), Conflict
    (`request_processed`, `user_is_principal`), Invalid.
    """
    if role is not None and role not in REQUESTABLE_ROLES:
        raise Invalid(
            "The role must be secondary or simple.",
            code="invalid_role",
            errors={"role": ["secondary or simple"]},
        )
    req, structure, user = flow.load_for_processing(
        session, rt, actor, AttachmentRequest, request_id
    )
    start = start_date(valid_from)
    if role is None:  # not changed by the manager: keep the one the user holds
        current = validated_role(existing_rows(session, user.id, structure.id).values())
        role = current if current in REQUESTABLE_ROLES else "simple"
    # The manager's ticks, when given, are the services the user will hold.
    ticked = whole_structure is not None or service_ids is not None
    if whole_structure is None:
        whole_structure = req.whole_structure
        service_ids = (
            service_ids if service_ids is not None else [s.service_id for s in req.services]
        )
    scopes = resolve_scope(
        session, structure.id, whole_structure=whole_structure, service_ids=service_ids
    )
    flow.claim(session, req, actor, "validated", role=role)
    change = grant(
        session,
        actor,
        user,
        structure,
        scopes,
        role=role,
        valid_from=start,
        valid_until=None,
    )
    # Pending rows of this request that the manager did not keep are refused;
    # validated ones the manager unticked are withdrawn (deactivated).
    untick = []
    refused = False
    for row in existing_rows(session, user.id, structure.id).values():
        if row.status == "pending" and row.service_id not in scopes:
            row.status = "refused"
            refused = True
        elif row.status == "validated" and row.service_id not in scopes:
            untick.append(row.service_id)
    withdrawn = (
        withdraw(session, user.id, structure.id, untick) if ticked and None not in scopes else []
    )
    if withdrawn or refused:  # the history's `after` shows the rows as they end
        change["after"] = summary(existing_rows(session, user.id, structure.id))
    default_spaces_request(session, rt, user, structure, scopes)
    record(
        session,
        action="attachment_request.validated",
        actor=actor,
        structure_id=structure.id,
        target_user_id=user.id,
        request_kind="attachment",
        request_id=req.id,
        comment="Validated",
        before=change["before"],
        after={**change["after"], "manager_comment": comment},
    )
    bump_revision(session, memberships=[(user.id, structure.id)])
    notify(
        session,
        user,
        f"Attachment to {structure.designation} validated",
        f"Your request to be attached to {structure.designation} was validated (role: {role}), "
        f"from {start.isoformat()}: {scope_names(session, scopes)}."
        + (f"\n\nNo longer attached to: {scope_names(session, withdrawn)}." if withdrawn else "")
        + (f"\n\nComment: {comment}" if comment else ""),
    )
    commit(session, rt)
    return Validated(req, holding(session, user.id, structure.id))


def refuse_request(
    session: Session, rt: Runtime, actor: User, request_id: int, *, reason: str
) -> AttachmentRequest:
    """Refuse a pending request (a reason is required); the requester gains
    nothing and is mailed the reason.

    Raises NotFound, Forbidden, Conflict `request_processed`, Invalid `reason_required`.
    """
    req, structure, user, reason = flow.claim_refusal(
        session, rt, actor, AttachmentRequest, request_id, reason
    )
    for row in existing_rows(session, user.id, structure.id).values():
        if row.status == "pending":
            row.status = "refused"
    asked = [None] if req.whole_structure else [s.service_id for s in req.services]
    record(
        session,
        action="attachment_request.refused",
        actor=actor,
        structure_id=structure.id,
        target_user_id=user.id,
        request_kind="attachment",
        request_id=req.id,
        comment="Refused",
        after={"reason": reason},
    )
    notify(
        session,
        user,
        f"Attachment to {structure.designation} refused",
        f"Your request to be attached to {structure.designation} was refused ("
        f"{scope_names(session, asked)}).\n\nReason: {reason}",
    )
    commit(session, rt)
    return req


# --- direct attachment and removal ----------------------------------------------


def attached_at_once(user: User, structure_id: int) -> bool:
    """Whether a manager's direct attachment of `user` to the structure takes
    effect at once: only for a person the structure's managers created for it
    and who has not activated the account yet (nobody else's consent to ask).
    Anyone else gets an invitation (docs/decisions.md, "Consent")."""
    return user.status == "pending" and user.created_for_structure_id == structure_id


def attach_directly(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    *,
    user_id: int | None = None,
    login_email: str | None = None,
    role: str = "simple",
    whole_structure: bool,
    service_ids: list[int] | None = None,
    valid_from: dt.date | None = None,
    valid_until: dt.date | None = None,
    comment: str | None = None,
) -> list[Attachment] | Invitation:
    """A manager attaches a person (picked by id or exact login email) with a
    role, a scope and dates. For an account the structure created and that is
    still pending (attached_at_once), the attachments are created validated,
    effective from `valid_from`, and returned. For anyone else nothing is
    granted: the person is invited (invitations.invite) and the invitation is
    returned; their attachments are made when they accept it.

    Raises NotFound (structure or user), Forbidden, Conflict (`structure_inactive`,
    `user_is_principal`, `invitation_pending`), Invalid.
    """
    structure = authorize(session, rt, actor, structure_id, "attachments.create")
    require_open_structure(structure)
    if role not in REQUESTABLE_ROLES:
        raise Invalid(
            "The role must be secondary or simple.",
            code="invalid_role",
            errors={"role": ["secondary or simple"]},
        )
    if (user_id is None) == (login_email is None):
        raise Invalid(
            "Name the user by user_id or by login_email.",
            code="invalid_user",
            errors={"user_id": ["user_id or login_email, one of them."]},
        )
    user = (
        session.get(User, user_id)
        if user_id is not None
        else find_by_login(session, login_email or "")
    )
    if user is None or user.kind != "person" or user.status == "closed":
        raise NotFound("No such user.")
    start = start_date(valid_from)
    if valid_until is not None and valid_until < start:
        raise Invalid(
            "The end date is before the start date.",
            code="invalid_dates",
            errors={"valid_until": ["Before valid_from."]},
        )
    scopes = resolve_scope(
        session, structure_id, whole_structure=whole_structure, service_ids=service_ids
    )
    if validated_role(existing_rows(session, user.id, structure_id).values()) == "principal":
        raise Conflict(
            "This user is the structure's principal manager; use the "
            "principal transfer to change their role.",
            code="user_is_principal",
        )
    if not attached_at_once(user, structure_id):
        return invitations.invite(
            session,
            rt,
            actor,
            structure,
            user,
            role=role,
            scopes=scopes,
            valid_from=start,
            valid_until=valid_until,
            comment=comment,
        )
    change = grant(
        session,
        actor,
        user,
        structure,
        scopes,
        role=role,
        valid_from=start,
        valid_until=valid_until,
    )
    default_spaces_request(session, rt, user, structure, scopes)
    record(
        session,
        action="attachment.created",
        actor=actor,
        structure_id=structure_id,
        target_user_id=user.id,
        comment="Attached",
        before=change["before"],
        after={**change["after"], "manager_comment": comment},
    )
    bump_revision(session, memberships=[(user.id, structure_id)])
    notify(
        session,
        user,
        f"Attached to {structure.designation}",
        f"A manager attached you to {structure.designation} (role: {role}), "
        f"from {start.isoformat()}: {scope_names(session, scopes)}."
        + (f"\n\nComment: {comment}" if comment else ""),
    )
    commit(session, rt)
    return [
        a for a in existing_rows(session, user.id, structure_id).values() if a.status == "validated"
    ]


def _detach(
    session: Session, user_id: int, structure_id: int, *, by: User, reason: str
) -> dict[str, Any]:
    """End every attachment of the user to the structure (validated or pending
    rows become `deleted`), deactivate their subscriptions there and close
    their pending attachment and subscription requests there (refused with
    `reason`), so nothing is granted and nothing pending can grant it back.
    Returns the rows' summary before. In the caller's transaction.

    Raises NotFound (not attached), Conflict `user_is_principal`.
    """
    rows = {
        k: v
        for k, v in existing_rows(session, user_id, structure_id).items()
        if v.status in ("validated", "pending")
    }
    if not rows:
        raise NotFound("This user is not attached to this structure.")
    if validated_role(rows.values()) == "principal":
        raise Conflict(
            "The principal manager cannot leave or be removed; transfer the role first.",
            code="user_is_principal",
        )
    before = summary(rows)
    for row in rows.values():
        row.status = "deleted"
    session.execute(
        update(Subscription)
        .where(
            Subscription.user_id == user_id,
            Subscription.structure_id == structure_id,
            Subscription.status == "validated",
        )
        .values(status="deactivated", updated_at=utcnow())
    )
    for model in (AttachmentRequest, SubscriptionRequest):
        session.execute(
            update(model)
            .where(
                model.user_id == user_id,
                model.structure_id == structure_id,
                model.status == "pending",
            )
            .values(status="refused", reason=reason, processed_at=utcnow(), processed_by_id=by.id)
        )
    return before


def remove(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    user_id: int,
    *,
    comment: str | None = None,
) -> None:
    """A manager removes every attachment of a user to the structure (see
    _detach); the user is mailed.

    Raises NotFound (not attached), Forbidden, Conflict `user_is_principal`.
    """
    structure = authorize(session, rt, actor, structure_id, "attachments.delete")
    before = _detach(session, user_id, structure_id, by=actor, reason="Attachment removed")
    record(
        session,
        action="attachment.deleted",
        actor=actor,
        structure_id=structure_id,
        target_user_id=user_id,
        comment="Deleted",
        before=before,
        after={"manager_comment": comment} if comment else None,
    )
    bump_revision(session, memberships=[(user_id, structure_id)])
    user = session.get(User, user_id)
    if user is not None:
        notify(
            session,
            user,
            f"Detached from {structure.designation}",
            f"A manager removed your attachment to {structure.designation}.",
        )
    commit(session, rt)


def leave(session: Session, rt: Runtime, actor: User, structure_id: int) -> None:
    """A person leaves a structure themself: every attachment of theirs there
    ends (see _detach; any role but principal, whatever the dates), the
    structure's managers are mailed, "attachment.left" is written and the
    revision moves. Commits.

    Raises NotFound (unknown structure, or not attached to it: not told apart),
    Forbidden `action_not_allowed` (technical users belong to their structure),
    Conflict `user_is_principal` (designate a successor first).
    """
    if actor.kind != "person":
        raise Forbidden(
            "A technical user cannot leave its structure; its principal manages it.",
            code="action_not_allowed",
        )
    structure = session.get(Structure, structure_id)
    try:
        if structure is None:
            raise NotFound("")
        before = _detach(session, actor.id, structure_id, by=actor, reason="Left the structure")
    except NotFound as exc:
        raise NotFound("No such structure among yours.") from exc
    record(
        session,
        action="attachment.left",
        actor=actor,
        structure_id=structure_id,
        target_user_id=actor.id,
        comment="Left",
        before=before,
    )
    bump_revision(session, memberships=[(actor.id, structure_id)])
    for manager in managers_of(session, structure_id):
        notify(
            session,
            manager,
            f"{actor.first_name} {actor.last_name} left {structure.designation}",
            f"{actor.first_name} {actor.last_name} ({actor.login_email}) left "
            f"{structure.designation}: their attachments and subscriptions there ended.",
        )
    commit(session, rt)


def validate_many(
    session: Session, rt: Runtime, actor: User, ids: list[int], **options: Any
) -> list[flow.Outcome]:
    """Bulk validate_request with the same options; one outcome per request,
    carrying (as `result`) the Validated of each success."""
    return flow.bulk(session, ids, lambda i: validate_request(session, rt, actor, i, **options))


def refuse_many(
    session: Session, rt: Runtime, actor: User, ids: list[int], *, reason: str
) -> list[flow.Outcome]:
    """Bulk refuse_request with one reason; one outcome per request."""
    return flow.bulk(session, ids, lambda i: refuse_request(session, rt, actor, i, reason=reason))
