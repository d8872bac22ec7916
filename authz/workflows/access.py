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
    pairs = [
        (role, state)
        for role in ROLES
        for state in STATES
        if rt.management.allows(role, action, state)
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
