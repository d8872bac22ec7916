"""Who holds which role on a structure, the management check every route uses,
and the gate of an inactive structure.

Roles come from the tables (validated attachment of an active user, inside its
dates: the rule of authz/roles.py); what a role may do comes from
policies/roles.yaml through the engine.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, Select, and_, false, select, tuple_
from sqlalchemy.orm import Session, aliased

from models import ROLES, Attachment, Structure, User

from ..engine.policy import STATES
from ..errors import Conflict, Forbidden, NotFound
from ..roles import in_force_condition, strongest, today
from ..runtime import Runtime
from .records import notify


def effective_attachments(user_id: int, on: dt.date) -> ColumnElement[bool]:
    """Condition: validated attachments of `user_id` in force on date `on`."""
    return and_(Attachment.user_id == user_id, in_force_condition(on))


def role_on(session: Session, user: User, structure_id: int) -> str | None:
    """The role `user` holds on the structure today, or None (the strongest
    of their validated attachments in force: authz/roles.py)."""
    if user.status != "active":
        return None
    return strongest(
        session.scalars(
            select(Attachment.role).where(
                effective_attachments(user.id, today()), Attachment.structure_id == structure_id
            )
        )
    )


def require_open_structure(structure: Structure) -> None:
    """Raises Conflict `structure_inactive`: an inactive structure takes no new
    attachment, request or identifier change."""
    if structure.status != "active":
        raise Conflict(
            "This structure is inactive: it accepts no new attachment or request.",
            code="structure_inactive",
        )


def authorize(
    session: Session, rt: Runtime, actor: User, structure_id: int, action: str
) -> Structure:
    """The structure, if `actor` may perform `action` on it.

    Raises NotFound when the actor may not even see the structure (unknown and
    invisible are not told apart), Forbidden when they see it but may not act.
    """
    structure = session.get(Structure, structure_id)
    if structure is None:
        raise NotFound("No such structure.")
    role = role_on(session, actor, structure.id)
    if not rt.management.allows(role, "structure.view", structure.status):
        raise NotFound("No such structure.")
    if not rt.management.allows(role, action, structure.status):
        raise Forbidden(
            f"Your role on this structure does not allow {action}.", code="action_not_allowed"
        )
    return structure


def managed_structures(rt: Runtime, actor: User, action: str) -> Select[int]:
    """Subquery: ids of the structures where `actor` may perform `action`
    (their role there and the structure's status, asked of the engine)."""
    engine = rt.management  # one look-up of the policy set in force, not one per pair
    pairs = [
        (role, state) for role in ROLES for state in STATES if engine.allows(role, action, state)
    ]
    if actor.status != "active" or not pairs:
        return select(Structure.id).where(false())
    target = aliased(Structure)
    return (
        select(Attachment.structure_id)
        .join(target, target.id == Attachment.structure_id)
        .where(
            effective_attachments(actor.id, today()),
            tuple_(Attachment.role, target.status).in_(pairs),
        )
    )


def visible_structures(rt: Runtime, actor: User) -> ColumnElement[bool]:
    """Condition on Structure: the structures `actor` may see (structure.view)."""
    return Structure.id.in_(managed_structures(rt, actor, "structure.view"))


def managers_of(session: Session, structure_id: int) -> list[User]:
    """The active principal and secondary managers of a structure today."""
    return list(
        session.scalars(
            select(User)
            .where(
                User.status == "active",
                User.id.in_(
                    select(Attachment.user_id).where(
                        Attachment.structure_id == structure_id,
                        Attachment.role.in_(("principal", "secondary")),
                        in_force_condition(today()),
                    )
                ),
            )
            .order_by(User.id)
        )
    )


def tell_managers(
    session: Session, structure: Structure, person: User | None, subject: str, body: str
) -> None:
    """Mail the structure's managers (an outbox row each, in the caller's
    transaction) about `person`, who is not mailed even if a manager."""
    for manager in managers_of(session, structure.id):
        if person is None or manager.id != person.id:
            notify(session, manager, subject, body)
