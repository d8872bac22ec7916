"""Change of identifier: the structure is duplicated under its new identifier
with its services, settings, opened spaces, attachments, subscriptions and
pending requests — except the billing mandate and the technical users'
attachments — and the original becomes inactive, pointing to its successor.

From then on the original allows consulting and processing existing documents
only (no `create`, no new attachment or request: policies/roles.yaml and
levels.csv say so for inactive structures); the successor carries on.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import (
    Attachment,
    AttachmentRequest,
    AttachmentRequestService,
    OpenedSpace,
    Service,
    Structure,
    StructureDefaultSpace,
    Subscription,
    SubscriptionRequest,
    SubscriptionRequestLine,
    User,
    utcnow,
)

from ..errors import Conflict, Forbidden, Invalid
from ..runtime import Runtime
from .access import authorize, require_open_structure, tell_managers
from .records import bump_revision, commit, notify, record
from .structures import SETTING_FIELDS, normalize_identifier, snapshot

MOVED = "Moved to the successor structure (change of identifier)"


def change_identifier(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    *,
    identifier_type: str,
    identifier_value: str,
    confirm: bool,
    designation: str | None = None,
) -> Structure:
    """Duplicate the structure under a new identifier; return the successor.

    Raises NotFound, Forbidden (`action_not_allowed`, `centrally_managed`),
    Conflict (`structure_inactive`, `identifier_taken`), Invalid
    (`confirmation_required`, `invalid_identifier`, `same_identifier`).
    """
    old = authorize(session, rt, actor, structure_id, "identifier.change")
    require_open_structure(old)
    if old.centrally_managed:
        raise Forbidden(
            "This public structure is managed through the state's central "
            "pipeline: its identifier changes there.",
            code="centrally_managed",
        )
    if not confirm:
        raise Invalid(
            "Confirm the change of identifier (confirm: true): the structure becomes inactive.",
            code="confirmation_required",
            errors={"confirm": ["Must be true."]},
        )
    value = normalize_identifier(identifier_type, identifier_value)
    if (identifier_type, value) == (old.identifier_type, old.identifier_value):
        raise Invalid("This is the structure's current identifier.", code="same_identifier")
    if session.scalar(
        select(Structure.id).where(
            Structure.identifier_type == identifier_type, Structure.identifier_value == value
        )
    ):
        raise Conflict("A structure already has this identifier.", code="identifier_taken")
    new = Structure(
        identifier_type=identifier_type,
        identifier_value=value,
        designation=(designation or old.designation).strip(),
        kind=old.kind,
        status="active",
        centrally_managed=False,
        origin_id=old.id,
        **{f: getattr(old, f) for f in SETTING_FIELDS},
    )
    session.add(new)
    session.flush()
    new.default_spaces = [
        StructureDefaultSpace(space_code=d.space_code) for d in old.default_spaces
    ]
    services = _copy_services(session, old, new)
    for opened in old.opened_spaces:
        new.opened_spaces.append(
            OpenedSpace(
                space_code=opened.space_code,
                service_id=services[opened.service_id] if opened.service_id else None,
            )
        )
    technical = set(session.scalars(select(User.id).where(User.kind == "technical")))
    members = _copy_attachments(session, old, new, services, technical)
    _copy_subscriptions(session, old, new, services, technical)
    moved = _move_requests(session, actor, old, new, services)
    old.status, old.successor_id = "inactive", new.id
    session.flush()
    after = {"successor_id": new.id, "identifier_type": identifier_type, "identifier_value": value}
    record(
        session,
        action="structure.identifier_changed",
        actor=actor,
        structure_id=old.id,
        comment="Identifier changed: structure duplicated, this one inactive",
        before=snapshot(old),
        after=after,
    )
    record(
        session,
        action="structure.created_from_identifier_change",
        actor=actor,
        structure_id=new.id,
        comment=f"Created from structure {old.id}",
        before={
            "origin_id": old.id,
            "identifier_type": old.identifier_type,
            "identifier_value": old.identifier_value,
        },
        after=snapshot(new),
    )
    bump_revision(
        session,
        structures=[old.id, new.id],
        memberships=[(uid, sid) for uid in members for sid in (old.id, new.id)],
    )
    _tell(session, actor, old, new, moved)
    commit(session, rt)
    return new


def _tell(session: Session, actor: User, old: Structure, new: Structure, moved: set[int]) -> None:
    """Mail the other managers about the change, and each person whose pending
    request moved to the successor (outbox rows in the caller's transaction)."""
    where = f"{new.identifier_type} {new.identifier_value} (structure {new.id})"
    tell_managers(
        session,
        old,
        actor,
        f"{old.designation}: identifier changed",
        f"{actor.first_name} {actor.last_name} changed the identifier of {old.designation}: "
        f"it carries on as {new.designation}, {where}, with its services, settings, "
        f"attachments and subscriptions. The former structure {old.identifier_type} "
        f"{old.identifier_value} (structure {old.id}) is inactive: existing documents "
        "stay consultable, nothing new is entered there.",
    )
    for user in session.scalars(select(User).where(User.id.in_(moved)).order_by(User.id)):
        notify(
            session,
            user,
            f"Your request on {old.designation} moved",
            f"{old.designation} changed its identifier and carries on as {where}. Your "
            "pending request moved there and waits for its managers' decision; the one "
            "on the former structure is closed.",
        )


def _copy_services(session: Session, old: Structure, new: Structure) -> dict[int, int]:
    mapping = {}
    for svc in session.scalars(select(Service).where(Service.structure_id == old.id)):
        copy = Service(structure_id=new.id, code=svc.code, label=svc.label, active=svc.active)
        session.add(copy)
        session.flush()
        mapping[svc.id] = copy.id
    return mapping


def _copy_attachments(
    session: Session, old: Structure, new: Structure, services: dict[int, int], technical: set[int]
) -> set[int]:
    """Validated and pending attachments, except technical users'. Returns the
    users who had any attachment on the original."""
    members = set()
    for att in session.scalars(select(Attachment).where(Attachment.structure_id == old.id)):
        members.add(att.user_id)
        if att.user_id in technical or att.status not in ("validated", "pending"):
            continue
        session.add(
            Attachment(
                user_id=att.user_id,
                structure_id=new.id,
                service_id=services[att.service_id] if att.service_id else None,
                role=att.role,
                status=att.status,
                valid_from=att.valid_from,
                valid_until=att.valid_until,
                created_by_id=att.created_by_id,
            )
        )
    return members


def _copy_subscriptions(
    session: Session, old: Structure, new: Structure, services: dict[int, int], technical: set[int]
) -> None:
    for sub in session.scalars(
        select(Subscription).where(
            Subscription.structure_id == old.id, Subscription.status == "validated"
        )
    ):
        if sub.user_id in technical:
            continue
        session.add(
            Subscription(
                user_id=sub.user_id,
                structure_id=new.id,
                space_code=sub.space_code,
                service_id=services[sub.service_id] if sub.service_id else None,
                level=sub.level,
                status="validated",
                granted_by_id=sub.granted_by_id,
            )
        )


def _move_requests(
    session: Session, actor: User, old: Structure, new: Structure, services: dict[int, int]
) -> set[int]:
    """Pending requests go on on the successor; on the original they are closed
    (refused, with the reason saying where they went). Returns the requesters."""
    now = utcnow()
    requesters: set[int] = set()
    for req in session.scalars(
        select(AttachmentRequest).where(
            AttachmentRequest.structure_id == old.id, AttachmentRequest.status == "pending"
        )
    ):
        session.add(
            AttachmentRequest(
                user_id=req.user_id,
                structure_id=new.id,
                whole_structure=req.whole_structure,
                comment=req.comment,
                status="pending",
                created_at=req.created_at,
                services=[
                    AttachmentRequestService(service_id=services[s.service_id])
                    for s in req.services
                ],
            )
        )
        requesters.add(req.user_id)
        req.status, req.reason, req.processed_at, req.processed_by_id = (
            "refused",
            MOVED,
            now,
            actor.id,
        )
    for sreq in session.scalars(
        select(SubscriptionRequest).where(
            SubscriptionRequest.structure_id == old.id, SubscriptionRequest.status == "pending"
        )
    ):
        session.add(
            SubscriptionRequest(
                user_id=sreq.user_id,
                structure_id=new.id,
                comment=sreq.comment,
                origin=sreq.origin,
                status="pending",
                created_at=sreq.created_at,
                lines=[
                    SubscriptionRequestLine(
                        space_code=line.space_code,
                        level=line.level,
                        service_id=services[line.service_id] if line.service_id else None,
                    )
                    for line in sreq.lines
                ],
            )
        )
        requesters.add(sreq.user_id)
        sreq.status, sreq.reason, sreq.processed_at, sreq.processed_by_id = (
            "refused",
            MOVED,
            now,
            actor.id,
        )
    return requesters
