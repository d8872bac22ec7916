"""Subscription requests: a user asks for rights on spaces of a structure they
are attached to; its managers validate (switching any line between
consultation and modification) or refuse, unit or bulk.

Same transaction rules as authz/workflows/attachments.py: grants, revision bump, history
entry and mail commit together; a request is processed at most once.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from .access import effective_attachments, require_open_structure, tell_managers
from .records import bump_revision, commit, notify, record
from .service_refs import resolve
from .withdrawal import lines_named


def _triples(req: SubscriptionRequest) -> list[tuple[str, int | None, str]]:
    """The request's lines as (space, service or None, level), for lines_named."""
    return [(line.space_code, line.service_id, line.level) for line in req.lines]


def _scope(session: Session, service_id: int | None) -> str:
    """How a line's scope reads: "all services" or the service's code."""
    if service_id is None:
        return "all services"
    if isinstance(service_id, str):  # a code the structure does not have
        return f"service {service_id}"
    service = session.get(Service, service_id)
    return f"service {service.code}" if service else f"service {service_id}"


def _line_problem(
    session: Session,
    rt: Runtime,
    structure: Structure,
    *,
    space: str,
    service_id: int | None,
    level: str,
) -> tuple[str, str] | None:
    """What is wrong with a line, as (code, message), or None. A line names a
    known space, opened on the structure (or on that service), never
    public-only on a private structure, an active service of the structure if
    any, and a level. Codes: `unknown_space`, `public_only_space`,
    `invalid_level`, `unknown_service`, `space_not_opened`."""
    entry = rt.policies.space(space)
    if entry is None:
        return "unknown_space", f"Unknown space {space!r}."
    if entry.public_only and structure.kind != "public":
        return "public_only_space", f"The space {space!r} exists only on public structures."
    if level not in LEVELS:
        return "invalid_level", "The level must be consult or modify."
    if isinstance(service_id, str):  # a code that resolved to none of its services
        return "unknown_service", f"No service {service_id} in this structure."
    if service_id is not None:
        service = session.get(Service, service_id)
        if service is None or service.structure_id != structure.id:
            return "unknown_service", f"Service {service_id} is not a service of this structure."
        if not service.active:
            return "unknown_service", f"The service {service.code} is inactive."
    opened = session.scalar(
        select(OpenedSpace.id).where(
            OpenedSpace.structure_id == structure.id,
            OpenedSpace.space_code == space,
            or_(OpenedSpace.service_id.is_(None), OpenedSpace.service_id == service_id),
        )
    )
    if opened is None:
        where = "this structure" + (f" nor on {_scope(session, service_id)}" if service_id else "")
        return "space_not_opened", f"The space {space!r} is not opened on {where}."
    return None


def _refuse_lines(session: Session, problems: dict[int, tuple[str, str]], lines: list) -> None:
    """Raises Invalid naming every bad line (by its position from 1, its space
    and scope); the code is the first bad line's. Nothing if no problem."""
    if not problems:
        return
    named = {
        i: f"line {i + 1} ({lines[i]['space']}, {_scope(session, lines[i].get('service_id'))}): "
        f"{message}"
        for i, (_, message) in sorted(problems.items())
    }
    raise Invalid(
        "; ".join(named.values()),
        code=problems[min(problems)][0],
        errors={"lines": {str(i): [text] for i, text in named.items()}},
    )


def _check_line(
    session: Session,
    rt: Runtime,
    structure: Structure,
    *,
    space: str,
    service_id: int | None,
    level: str,
) -> None:
    """Raises Invalid if the line has a problem (see _line_problem)."""
    problem = _line_problem(session, rt, structure, space=space, service_id=service_id, level=level)
    if problem:
        line = {"space": space, "service_id": service_id}
        _refuse_lines(session, {0: problem}, [line])


def _outside(
    session: Session, attached: Sequence[int | None], service_id: int | None
) -> tuple[str, str] | None:
    """`outside_attachment` if the user's attachments do not cover the line's
    scope: "all services" needs an attachment to the whole structure, even for
    someone attached to each service one by one (docs/decisions.md)."""
    if None in attached or service_id in attached:
        return None
    theirs = ", ".join(sorted(_scope(session, s).removeprefix("service ") for s in attached))
    if service_id is None:
        return (
            "outside_attachment",
            (
                f"You are attached to some services only ({theirs}): ask for each of them; "
                '"all services" needs an attachment to the whole structure.'
            ),
        )
    return (
        "outside_attachment",
        f"You are not attached to {_scope(session, service_id)} (only to {theirs}).",
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
    # A service named by its code is this structure's service with that code.
    lines = [
        {**line, "service_id": resolve(session, structure_id, line.get("service_id"))}
        for line in lines
    ]
    problems: dict[int, tuple[str, str]] = {}
    seen: dict[tuple[str, int | str | None], int] = {}
    for index, line in enumerate(lines):
        key = (line["space"], line.get("service_id"))
        if key in seen:
            problems[index] = (
                "duplicate_line",
                f"The same space and scope as line {seen[key] + 1}.",
            )
            continue
        seen[key] = index
        problem = _line_problem(
            session,
            rt,
            structure,
            space=line["space"],
            service_id=line.get("service_id"),
            level=line["level"],
        ) or _outside(session, attached, line.get("service_id"))
        if problem:
            problems[index] = problem
    _refuse_lines(session, problems, lines)
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
    asked = lines_named(session, rt, _triples(req))
    tell_managers(
        session,
        structure,
        actor,
        f"New subscription request on {structure.designation}",
        f"{actor.first_name} {actor.last_name} ({actor.login_email}) asks for spaces of "
        f"{structure.designation}: {asked}."
        + (f"\n\nTheir comment: {comment}" if comment else "")
        + f"\n\nOpen it: GET /v1/subscription-requests/{req.id}",
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

    The structure's sole manager validates their own request (nobody else
    could): recorded as `subscription_request.self_validated`.

    Raises NotFound, Forbidden (`action_not_allowed`, `own_request` while another
    manager can decide it), Conflict `request_processed`, Invalid (a line no
    longer valid: space closed…, `unknown_line`).
    """
    req, structure, user = flow.load_for_processing(
        session, rt, actor, SubscriptionRequest, request_id, self_validation=True
    )
    own = user.id == actor.id
    levels = levels or {}
    unknown = set(levels) - {line.id for line in req.lines}
    if unknown:
        raise Invalid(
            f"Lines {sorted(unknown)} are not lines of this request.",
            code="unknown_line",
            errors={"lines": [f"Unknown: {sorted(unknown)}"]},
        )
    problems = {}
    for index, line in enumerate(req.lines):
        line.level = levels.get(line.id, line.level)
        problem = _line_problem(
            session,
            rt,
            structure,
            space=line.space_code,
            service_id=line.service_id,
            level=line.level,
        )
        if problem:
            problems[index] = problem
    _refuse_lines(
        session, problems, [{"space": x.space_code, "service_id": x.service_id} for x in req.lines]
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
        action="subscription_request.self_validated" if own else "subscription_request.validated",
        actor=actor,
        structure_id=structure.id,
        target_user_id=user.id,
        request_kind="subscription",
        request_id=req.id,
        comment="Validated by the sole manager" if own else "Validated",
        before={"subscriptions": before},
        after={"lines": _lines(req), "manager_comment": comment, "sole_manager": own},
    )
    bump_revision(session, memberships=[(user.id, structure.id)])
    granted = lines_named(session, rt, _triples(req))
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
        f"Your subscription request on {structure.designation} was refused: "
        f"{lines_named(session, rt, _triples(req))}.\n\nReason: {reason}",
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
