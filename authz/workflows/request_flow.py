"""What attachment and subscription requests share: who sees them, how they
are listed, how a manager claims one for processing — at most once, with a
conditional UPDATE … WHERE status = 'pending' — and bulk processing with one
outcome per item."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from models import AttachmentRequest, Structure, SubscriptionRequest, User, utcnow

from ..db import rowcount
from ..errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from ..pagination import Page, paginate
from ..runtime import Runtime
from .access import authorize, managed_structures

R = TypeVar("R", AttachmentRequest, SubscriptionRequest)

# The management action that lets one see and process each kind of request.
PROCESS = {
    AttachmentRequest: "attachment_requests.process",
    SubscriptionRequest: "subscription_requests.process",
}
NAME = {AttachmentRequest: "attachment request", SubscriptionRequest: "subscription request"}


@dataclass(frozen=True)
class Outcome:
    """What became of one item of a bulk operation: done, or the domain error's
    code and detail."""

    id: int
    ok: bool
    code: str | None = None
    detail: str | None = None


def bulk(session: Session, ids: list[int], one: Callable[[int], Any]) -> list[Outcome]:
    """Run `one(id)` for each id, each in its own transaction; report per item."""
    outcomes = []
    for item in dict.fromkeys(ids):
        try:
            one(item)
            outcomes.append(Outcome(item, True))
        except DomainError as exc:
            session.rollback()
            outcomes.append(Outcome(item, False, exc.code, exc.detail))
    return outcomes


def list_requests(
    session: Session,
    rt: Runtime,
    actor: User,
    model: type[R],
    *,
    structure_id: int | None,
    status: str | None,
    created_from: dt.datetime | None,
    created_to: dt.datetime | None,
    mine: bool,
    page: int,
    page_size: int,
) -> Page:
    """Requests on the structures the actor may process, and the actor's own,
    filtered, oldest first."""
    stmt = select(model).where(
        or_(
            model.user_id == actor.id,
            model.structure_id.in_(managed_structures(rt, actor, PROCESS[model])),
        )
    )
    if mine:
        stmt = stmt.where(model.user_id == actor.id)
    if structure_id is not None:
        stmt = stmt.where(model.structure_id == structure_id)
    if status:
        stmt = stmt.where(model.status == status)
    if created_from:
        stmt = stmt.where(model.created_at >= created_from)
    if created_to:
        stmt = stmt.where(model.created_at < created_to)
    return paginate(
        session, stmt.order_by(model.created_at, model.id), page=page, page_size=page_size
    )


def get_request(session: Session, rt: Runtime, actor: User, model: type[R], request_id: int) -> R:
    """Raises NotFound unless the actor may process its structure or made it."""
    req = session.get(model, request_id)
    if req is None:
        raise NotFound(f"No such {NAME[model]}.")
    if req.user_id != actor.id:
        try:
            authorize(session, rt, actor, req.structure_id, PROCESS[model])
        except (NotFound, Forbidden) as exc:
            raise NotFound(f"No such {NAME[model]}.") from exc
    return req


def load_for_processing(
    session: Session, rt: Runtime, actor: User, model: type[R], request_id: int
) -> tuple[R, Structure, User]:
    """The pending request, its structure and requester, if the actor may process it.

    Raises NotFound, Forbidden (`action_not_allowed`, `own_request`), Conflict
    `request_processed`.
    """
    req = session.get(model, request_id)
    if req is None:
        raise NotFound(f"No such {NAME[model]}.")
    try:
        structure = authorize(session, rt, actor, req.structure_id, PROCESS[model])
    except NotFound as exc:  # another structure's request: the same answer as a missing one
        raise NotFound(f"No such {NAME[model]}.") from exc
    if req.user_id == actor.id:
        raise Forbidden("Nobody validates or refuses their own request.", code="own_request")
    if req.status != "pending":
        raise Conflict("This request was already processed.", code="request_processed")
    return req, structure, session.get_one(User, req.user_id)


def claim(session: Session, req: R, actor: User, status: str, **values: Any) -> None:
    """Move a pending request to `status`, at most once even under concurrency.

    Raises Conflict `request_processed` (another transaction got there first).
    """
    model = type(req)
    claimed = rowcount(
        session.execute(
            update(model)
            .where(model.id == req.id, model.status == "pending")
            .values(status=status, processed_at=utcnow(), processed_by_id=actor.id, **values)
            .execution_options(synchronize_session=False)
        )
    )
    if claimed != 1:
        session.rollback()
        raise Conflict("This request was already processed.", code="request_processed")
    session.refresh(req)


def claim_refusal(
    session: Session, rt: Runtime, actor: User, model: type[R], request_id: int, reason: str
) -> tuple[R, Structure, User, str]:
    """Check the reason, then claim the pending request as refused (see
    load_for_processing and claim). Returns the request, its structure, the
    requester and the stripped reason.

    Raises Invalid `reason_required`, and what load_for_processing and claim raise.
    """
    reason = (reason or "").strip()
    if not reason:
        raise Invalid(
            "A reason is required to refuse.",
            code="reason_required",
            errors={"reason": ["Required."]},
        )
    req, structure, user = load_for_processing(session, rt, actor, model, request_id)
    claim(session, req, actor, "refused", reason=reason)
    return req, structure, user, reason
