"""Subscription requests: a user asks for rights on spaces of a structure they
are attached to; its managers validate (switching any line between
consultation and modification) or refuse, unit or bulk.

Same transaction rules as authz/workflows/attachments.py: grants, revision bump, history
entry and mail commit together; a request is processed at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models import (
    LEVELS,
    Attachment,
    OpenedSpace,
    Service,
    Structure,
    Subscription,
    SubscriptionRequest,
    SubscriptionRequestLine,
    User,
)

from ..errors import Conflict, Invalid, NotFound
from ..pagination import Page
from ..roles import today
from ..runtime import Runtime
from . import request_flow as flow
from .access import effective_attachments, require_open_structure
from .records import bump_revision, commit, notify, record


def _check_line(
    session: Session,
    rt: Runtime,
    structure: Structure,
    *,
    space: str,
    service_id: int | None,
    level: str,
) -> None:
    """A line must name a known space, opened on the structure (or on that
    service), never public-only on a private structure, and a level.

    Raises Invalid `unknown_space`, `public_only_space`, `unknown_service`,
    `space_not_opened`, `invalid_level`.
    """
    entry = rt.policies.space(space)
    if entry is None:
        raise Invalid(
            f"Unknown space {space!r}.",
            code="unknown_space",
            errors={"lines": [f"Unknown space {space!r}."]},
        )
    if entry.public_only and structure.kind != "public":
        raise Invalid(
            f"The space {space!r} exists only on public structures.",
            code="public_only_space",
            errors={"lines": [f"{space!r} is for public structures only."]},
        )
    if level not in LEVELS:
        raise Invalid(
            "The level must be consult or modify.",
            code="invalid_level",
            errors={"lines": ["level: consult or modify"]},
        )
    if service_id is not None:
        service = session.get(Service, service_id)
        if service is None or service.structure_id != structure.id or not service.active:
            raise Invalid(
                f"Service {service_id} is not an active service of this structure.",
                code="unknown_service",
                errors={"lines": [f"Unknown or inactive service {service_id}."]},
            )
    opened = session.scalar(
        select(OpenedSpace.id).where(
            OpenedSpace.structure_id == structure.id,
            OpenedSpace.space_code == space,
            or_(OpenedSpace.service_id.is_(None), OpenedSpace.service_id == service_id),
        )
    )
    if opened is None:
        raise Invalid(
            f"The space {space!r} is not opened here.",
            code="space_not_opened",
            errors={
                "lines": [
                    f"{space!r} is not opened on this structure"
                    + (" or service." if service_id else ".")
                ]
            },
        )


def create_request(
    session: Session,
    rt: Runtime,
    actor: User,
    *,
    structure_id: int,
    lines: list[dict[str, Any]],
    comment: str | None = None,
) -> SubscriptionRequest:
    """An attached user asks for spaces: lines of (space, service or None for all
    services, consult or modify).

    Raises NotFound (structure unknown or the actor is not attached to it),
    Conflict `structure_inactive` / `request_pending`, Invalid (see _check_line,
    `no_lines`, `duplicate_line`).
    """
    structure = session.get(Structure, structure_id)
    attached = session.scalars(
        select(Attachment.service_id).where(
            effective_attachments(actor.id, today()), Attachment.structure_id == structure_id
        )
    ).all()
    if structure is None or not attached or actor.status != "active":
        raise NotFound("No such structure among yours.")
    require_open_structure(structure)
    if not lines:
        raise Invalid(
            "Ask for at least one space.", code="no_lines", errors={"lines": ["At least one line."]}
        )
    seen = set()
    for line in lines:
        key = (line["space"], line.get("service_id"))
        if key in seen:
            raise Invalid(
                "The same space and service appear twice.",
                code="duplicate_line",
                errors={"lines": [f"Repeated: {key}"]},
            )
        seen.add(key)
        _check_line(
            session,
            rt,
            structure,
            space=line["space"],
            service_id=line.get("service_id"),
            level=line["level"],
        )
        if None not in attached and line.get("service_id") not in attached:
            raise Invalid(
                "You are attached to some services only: ask for those.",
                code="outside_attachment",
                errors={"lines": [f"Not attached to service {key[1]}."]},
            )
    if session.scalar(
        select(SubscriptionRequest.id).where(
            SubscriptionRequest.user_id == actor.id,
            SubscriptionRequest.structure_id == structure_id,
            SubscriptionRequest.status == "pending",
            SubscriptionRequest.origin == "manual",
        )
    ):
        raise Conflict(
            "You already have a pending subscription request on this structure.",
            code="request_pending",
        )
    req = SubscriptionRequest(
        user_id=actor.id,
        structure_id=structure_id,
        comment=comment,
        origin="manual",
        status="pending",
        lines=[
            SubscriptionRequestLine(
                space_code=line["space"], service_id=line.get("service_id"), level=line["level"]
            )
            for line in lines
        ],
    )
    session.add(req)
    session.flush()
    record(
        session,
        action="subscription_request.created",
        actor=actor,
        structure_id=structure_id,
        target_user_id=actor.id,
        request_kind="subscription",
        request_id=req.id,
        comment=comment,
        after={"lines": _lines(req)},
    )
    commit(session, rt)
    return req


def _lines(req: SubscriptionRequest) -> list[dict[str, Any]]:
    return [
        {
            "id": line.id,
            "space": line.space_code,
            "service_id": line.service_id,
            "level": line.level,
        }
        for line in req.lines
    ]


@dataclass(frozen=True)
class RequestDetail:
    request: SubscriptionRequest
    structure: Structure
    requester: User


def list_requests(session: Session, rt: Runtime, actor: User, **filters: Any) -> Page:
    """Subscription requests the actor may see (see request_flow.list_requests)."""
    return flow.list_requests(session, rt, actor, SubscriptionRequest, **filters)


def request_detail(session: Session, rt: Runtime, actor: User, request_id: int) -> RequestDetail:
    """A request with its structure and its requester (what the manager reads
    before deciding). Raises NotFound unless the actor manages its structure or
    made it."""
    req = flow.get_request(session, rt, actor, SubscriptionRequest, request_id)
    return RequestDetail(
        req, session.get_one(Structure, req.structure_id), session.get_one(User, req.user_id)
    )


def validate_request(
    session: Session,
    rt: Runtime,
    actor: User,
    request_id: int,
    *,
    levels: dict[int, str] | None = None,
    comment: str | None = None,
) -> SubscriptionRequest:
    """Validate a pending request; `levels` switches lines (by line id) between
    consult and modify. Each line becomes a validated subscription (replacing
    the user's previous one on the same space and scope); the user is mailed.

    Raises NotFound, Forbidden (`action_not_allowed`, `own_request`), Conflict
    `request_processed`, Invalid (a line no longer valid: space closed…,
    `unknown_line`).
    """
    req, structure, user = flow.load_for_processing(
        session, rt, actor, SubscriptionRequest, request_id
    )
    levels = levels or {}
    unknown = set(levels) - {line.id for line in req.lines}
    if unknown:
        raise Invalid(
            f"Lines {sorted(unknown)} are not lines of this request.",
            code="unknown_line",
            errors={"lines": [f"Unknown: {sorted(unknown)}"]},
        )
    for line in req.lines:
        line.level = levels.get(line.id, line.level)
        _check_line(
            session,
            rt,
            structure,
            space=line.space_code,
            service_id=line.service_id,
            level=line.level,
        )
    flow.claim(session, req, actor, "validated", manager_comment=comment)
    existing = {
        (s.space_code, s.service_id): s
        for s in session.scalars(
            select(Subscription).where(
                Subscription.user_id == user.id, Subscription.structure_id == structure.id
            )
        )
    }
    before = [
        {"space": k[0], "service_id": k[1], "level": s.level, "status": s.status}
        for k, s in sorted(existing.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0))
    ]
    for line in req.lines:
        sub = existing.get((line.space_code, line.service_id))
        if sub is None:
            sub = Subscription(
                user_id=user.id,
                structure_id=structure.id,
                space_code=line.space_code,
                service_id=line.service_id,
            )
            session.add(sub)
        sub.level, sub.status, sub.granted_by_id = line.level, "validated", actor.id
    record(
        session,
        action="subscription_request.validated",
        actor=actor,
        structure_id=structure.id,
        target_user_id=user.id,
        request_kind="subscription",
        request_id=req.id,
        comment="Validated",
        before={"subscriptions": before},
        after={"lines": _lines(req), "manager_comment": comment},
    )
    bump_revision(session, memberships=[(user.id, structure.id)])
    granted = ", ".join(f"{line.space_code} ({line.level})" for line in req.lines)
    notify(
        session,
        user,
        f"Subscription on {structure.designation} validated",
        f"Your subscription request on {structure.designation} was validated: {granted}."
        + (f"\n\nComment: {comment}" if comment else ""),
    )
    commit(session, rt)
    return req


def refuse_request(
    session: Session, rt: Runtime, actor: User, request_id: int, *, reason: str
) -> SubscriptionRequest:
    """Refuse a pending request (reason required); history says Deactivated; the
    user is mailed the reason.

    Raises NotFound, Forbidden, Conflict `request_processed`, Invalid `reason_required`.
    """
    req, structure, user, reason = flow.claim_refusal(
        session, rt, actor, SubscriptionRequest, request_id, reason
    )
    record(
        session,
        action="subscription_request.refused",
        actor=actor,
        structure_id=structure.id,
        target_user_id=user.id,
        request_kind="subscription",
        request_id=req.id,
        comment="Deactivated",
        after={"reason": reason},
    )
    notify(
        session,
        user,
        f"Subscription on {structure.designation} refused",
        f"Your subscription request on {structure.designation} was refused.\n\nReason: {reason}",
    )
    commit(session, rt)
    return req


def validate_many(
    session: Session, rt: Runtime, actor: User, ids: list[int], *, comment: str | None = None
) -> list[flow.Outcome]:
    """Bulk validate_request as asked (levels unchanged); one outcome per request."""
    return flow.bulk(
        session, ids, lambda i: validate_request(session, rt, actor, i, comment=comment)
    )


def refuse_many(
    session: Session, rt: Runtime, actor: User, ids: list[int], *, reason: str
) -> list[flow.Outcome]:
    """Bulk refuse_request with one reason; one outcome per request."""
    return flow.bulk(session, ids, lambda i: refuse_request(session, rt, actor, i, reason=reason))
