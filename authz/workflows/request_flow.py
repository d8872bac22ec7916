"""What attachment and subscription requests share: who sees them, how they
are listed, how a manager claims one for processing — at most once, with a
conditional UPDATE … WHERE status = 'pending' — and bulk processing with one
outcome per item."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from models import AttachmentRequest, Structure, SubscriptionRequest, User, utcnow

from ..db import rowcount
from ..errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from ..pagination import Page, paginate
from ..runtime import Runtime
from .access import authorize, managed_structures, managers_of, role_on

R = TypeVar("R", AttachmentRequest, SubscriptionRequest)

# The management action that lets one see and process each kind of request.
PROCESS = {
    AttachmentRequest: "attachment_requests.process",
    SubscriptionRequest: "subscription_requests.process",
}
NAME = {AttachmentRequest: "attachment request", SubscriptionRequest: "subscription request"}


@dataclass(frozen=True)
class Outcome:
    """What became of one item of a bulk operation: done (with what the
    workflow returned), or the domain error's code and detail."""

    id: int
    ok: bool
    code: str | None = None
    detail: str | None = None
    result: Any = None


def bulk(session: Session, ids: list[int], one: Callable[[int], Any]) -> list[Outcome]:
    """Run `one(id)` for each id, each in its own transaction; report per item."""
    outcomes = []
    for item in dict.fromkeys(ids):
        try:
            outcomes.append(Outcome(item, True, result=one(item)))
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


@dataclass(frozen=True)
class ManagedStructure:
    """A structure the caller manages, their role there, and how many pending
    requests of others wait for its managers (None: that role may not process
    them on a structure in that status)."""

    structure: Structure
    role: str
    pending_attachment_requests: int | None
    pending_subscription_requests: int | None


@dataclass(frozen=True)
class ManagerSummary:
    """What waits for a manager: their structures, and the totals over them."""

    structures: list[ManagedStructure]

    @property
    def pending_attachment_requests(self) -> int:
        return sum(s.pending_attachment_requests or 0 for s in self.structures)

    @property
    def pending_subscription_requests(self) -> int:
        return sum(s.pending_subscription_requests or 0 for s in self.structures)


def summary(session: Session, rt: Runtime, actor: User) -> ManagerSummary:
    """The guide's summary screen: every structure where the actor holds a
    manager role today, by designation, with the pending requests they may
    process there — never their own."""
    managed = [
        (structure, role)
        for structure in session.scalars(
            select(Structure)
            .where(Structure.id.in_(managed_structures(rt, actor, "structure.view")))
            .order_by(Structure.designation, Structure.id)
        )
        if (role := role_on(session, actor, structure.id)) in rt.policies.manager_roles
    ]
    counts: dict[type[AttachmentRequest | SubscriptionRequest], dict[int, int]] = {}
    for model in (AttachmentRequest, SubscriptionRequest):
        counts[model] = dict(
            session.execute(
                select(model.structure_id, func.count())
                .where(
                    model.structure_id.in_([st.id for st, _ in managed]),
                    model.status == "pending",
                    model.user_id != actor.id,
                )
                .group_by(model.structure_id)
            ).all()
        )

    def pending(
        model: type[AttachmentRequest | SubscriptionRequest], structure: Structure, role: str
    ) -> int | None:
        if not rt.management.allows(role, PROCESS[model], structure.status):
            return None
        return counts[model].get(structure.id, 0)

    return ManagerSummary(
        [
            ManagedStructure(
                structure,
                role,
                pending(AttachmentRequest, structure, role),
                pending(SubscriptionRequest, structure, role),
            )
            for structure, role in managed
        ]
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


def sole_manager(session: Session, actor: User, structure_id: int) -> bool:
    """Whether `actor` is the only active manager (principal or secondary, in
    force today) of the structure: nobody else could decide their request."""
    return [m.id for m in managers_of(session, structure_id)] == [actor.id]


def load_for_processing(
    session: Session,
    rt: Runtime,
    actor: User,
    model: type[R],
    request_id: int,
    *,
    self_validation: bool = False,
) -> tuple[R, Structure, User]:
    """The pending request, its structure and requester, if the actor may process it.
    With `self_validation`, the actor's own request is theirs to decide when
    they are the structure's sole manager (docs/decisions.md, "A sole manager").

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
    if req.user_id == actor.id and not (
        self_validation and sole_manager(session, actor, structure.id)
    ):
        raise Forbidden(
            "Nobody validates or refuses their own request"
            + (" while another manager of the structure can." if self_validation else "."),
            code="own_request",
        )
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
