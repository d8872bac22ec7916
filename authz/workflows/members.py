"""What a manager changes in a member's rights without removing them (issue 15):
their role, the services they are attached to, one subscription line.

Authority follows the existing workflows: widening (a promotion, a service
added) needs `attachments.create` and an active structure, as attaching does;
narrowing (a demotion, a service removed) needs `attachments.delete`, and
revoking a subscription `subscription_requests.process`, both allowed on an
inactive structure, as removal is. Nobody changes the principal here (they
hand the role over), and nobody acts on someone whose role is above their own.
Another structure's manager gets 404, as for an unknown id.

Each change is one transaction: the rows, the history entry, the policy
revision bump (decisions change at once) and the mail to the member.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Attachment, Structure, Subscription, User

from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..roles import RANK, validated_role
from ..runtime import Runtime
from .access import authorize, require_open_structure, role_on
from .attachments import (
    REQUESTABLE_ROLES,
    existing_rows,
    grant,
    resolve_scope,
    start_date,
    summary,
)
from .records import bump_revision, commit, notify, record
from .users import Member, member
from .withdrawal import lines_named, scope_names, withdraw

NOT_A_MEMBER = "This user is not attached to this structure."


def _target(
    session: Session, rt: Runtime, actor: User, structure_id: int, user_id: int, right: str
) -> tuple[Structure, User, dict[int | None, Attachment], str]:
    """The structure, the member, their attachment rows and their role, if
    `actor` holds the management action `right` on the structure.

    Raises NotFound (structure invisible, user unknown or not a validated
    member: the same answer), Forbidden (`action_not_allowed`, `higher_role`),
    Conflict `user_is_principal` / `technical_user`.
    """
    structure = authorize(session, rt, actor, structure_id, right)
    user = session.get(User, user_id)
    rows = existing_rows(session, user_id, structure_id) if user else {}
    role = validated_role(rows.values())
    if user is None or role is None:
        raise NotFound(NOT_A_MEMBER)
    if role == "principal":
        raise Conflict(
            "This user is the structure's principal manager; use the principal "
            "transfer to change their role or rights.",
            code="user_is_principal",
        )
    if role == "technical":
        raise Conflict(
            "A technical user's attachment is managed with the technical user.",
            code="technical_user",
        )
    if RANK[role] > RANK.get(role_on(session, actor, structure_id) or "", 0):
        raise Forbidden(
            "You may not change the rights of someone whose role is above yours.",
            code="higher_role",
        )
    return structure, user, rows, role


def change_role(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    user_id: int,
    *,
    role: str,
    comment: str | None = None,
) -> Member:
    """Give a member another role (secondary or simple) on every validated
    attachment of theirs there. A promotion needs `attachments.create` and an
    active structure, a demotion `attachments.delete`; the same role changes
    nothing and writes nothing.

    Raises Invalid `invalid_role`, and what _target and require_open_structure raise.
    """
    if role not in REQUESTABLE_ROLES:
        raise Invalid(
            "The role must be secondary or simple.",
            code="invalid_role",
            errors={"role": ["secondary or simple"]},
        )
    structure = authorize(session, rt, actor, structure_id, "structure.view")
    user = session.get(User, user_id)
    current = (
        validated_role(existing_rows(session, user_id, structure_id).values()) if user else None
    )
    promotion = RANK.get(role, 0) > RANK.get(current or "", 0)
    structure, user, rows, current = _target(
        session,
        rt,
        actor,
        structure_id,
        user_id,
        "attachments.create" if promotion else "attachments.delete",
    )
    if promotion:
        require_open_structure(structure)
    if role == current:
        return member(session, user, structure_id)
    before = summary(rows)
    for row in rows.values():
        if row.status == "validated":
            row.role = role
    session.flush()
    record(
        session,
        action="attachment.role_changed",
        actor=actor,
        structure_id=structure_id,
        target_user_id=user.id,
        comment="Role changed",
        before=before,
        after={**summary(rows), "manager_comment": comment},
    )
    bump_revision(session, memberships=[(user.id, structure_id)])
    notify(
        session,
        user,
        f"Your role on {structure.designation} changed",
        f"A manager changed your role on {structure.designation} from {current} to {role}."
        + (f"\n\nComment: {comment}" if comment else ""),
    )
    commit(session, rt)
    return member(session, user, structure_id)


def add_services(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    user_id: int,
    *,
    service_ids: list[int],
    valid_from: dt.date | None = None,
    comment: str | None = None,
) -> Member:
    """Attach a member to more services (active services of the structure),
    with their current role, from `valid_from` (today by default).

    Raises Conflict `whole_structure` (already attached to all of it:
    services would add nothing), Invalid (`invalid_scope`, `unknown_service`),
    and what _target and require_open_structure raise.
    """
    structure, user, rows, role = _target(
        session, rt, actor, structure_id, user_id, "attachments.create"
    )
    require_open_structure(structure)
    if None in rows and rows[None].status == "validated":
        raise Conflict(
            "This user is attached to the whole structure: services would add nothing.",
            code="whole_structure",
        )
    scopes = resolve_scope(session, structure_id, whole_structure=False, service_ids=service_ids)
    added = [s for s in scopes if s not in rows or rows[s].status != "validated"]
    if not added:
        return member(session, user, structure_id)
    change = grant(
        session,
        actor,
        user,
        structure,
        added,
        role=role,
        valid_from=start_date(valid_from),
        valid_until=None,
    )
    record(
        session,
        action="attachment.services_added",
        actor=actor,
        structure_id=structure_id,
        target_user_id=user.id,
        comment="Services added",
        before=change["before"],
        after={**change["after"], "manager_comment": comment},
    )
    bump_revision(session, memberships=[(user.id, structure_id)])
    notify(
        session,
        user,
        f"Services added on {structure.designation}",
        f"A manager attached you to more services of {structure.designation}: "
        f"{scope_names(session, added)}." + (f"\n\nComment: {comment}" if comment else ""),
    )
    commit(session, rt)
    return member(session, user, structure_id)


def remove_service(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    user_id: int,
    service_id: int,
) -> Member:
    """Withdraw one service from a member (the row becomes deactivated, their
    subscriptions on that service too: authz/workflows/withdrawal.py).

    Raises NotFound (the member is not attached to that service), Conflict
    `last_attachment` (it is all they hold: remove the attachment instead),
    and what _target raises.
    """
    structure, user, rows, _ = _target(
        session, rt, actor, structure_id, user_id, "attachments.delete"
    )
    validated = [s for s, row in rows.items() if row.status == "validated"]
    if service_id not in validated:
        raise NotFound("This user is not attached to that service.")
    if validated == [service_id]:
        raise Conflict(
            "This is the user's last attachment here: remove the attachment instead.",
            code="last_attachment",
        )
    before = summary(rows)
    withdraw(session, user.id, structure_id, [service_id])
    record(
        session,
        action="attachment.services_removed",
        actor=actor,
        structure_id=structure_id,
        target_user_id=user.id,
        comment="Deactivated",
        before=before,
        after=summary(existing_rows(session, user.id, structure_id)),
    )
    bump_revision(session, memberships=[(user.id, structure_id)])
    notify(
        session,
        user,
        f"Service withdrawn on {structure.designation}",
        f"A manager withdrew your attachment to {scope_names(session, [service_id])} "
        f"of {structure.designation}, with your subscriptions there.",
    )
    commit(session, rt)
    return member(session, user, structure_id)


def subscriptions_of(
    session: Session, rt: Runtime, actor: User, structure_id: int, user_id: int
) -> list[Subscription]:
    """A member's subscriptions on the structure (validated and deactivated),
    for its managers (`users.list`).

    Raises NotFound (structure invisible, or the user is not attached there),
    Forbidden `action_not_allowed`.
    """
    authorize(session, rt, actor, structure_id, "users.list")
    if validated_role(existing_rows(session, user_id, structure_id).values()) is None:
        raise NotFound(NOT_A_MEMBER)
    return list(
        session.scalars(
            select(Subscription)
            .where(Subscription.user_id == user_id, Subscription.structure_id == structure_id)
            .order_by(Subscription.space_code, Subscription.service_id, Subscription.id)
        )
    )


def revoke_subscription(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    user_id: int,
    subscription_id: int,
) -> None:
    """Revoke one validated subscription of a member (it becomes deactivated:
    the guide's "Désactivé"). One's own may be revoked too.

    Raises NotFound (no such validated subscription of that member there),
    and what _target raises.
    """
    authorize(session, rt, actor, structure_id, "subscription_requests.process")
    if user_id != actor.id:
        _, user, _, _ = _target(
            session, rt, actor, structure_id, user_id, "subscription_requests.process"
        )
    else:
        user = actor
    structure = session.get_one(Structure, structure_id)
    sub = session.get(Subscription, subscription_id)
    if (
        sub is None
        or (sub.user_id, sub.structure_id) != (user_id, structure_id)
        or sub.status != "validated"
    ):
        raise NotFound("No such subscription of this user here.")
    line = {"space": sub.space_code, "service_id": sub.service_id, "level": sub.level}
    sub.status = "deactivated"
    record(
        session,
        action="subscription.revoked",
        actor=actor,
        structure_id=structure_id,
        target_user_id=user_id,
        comment="Deactivated",
        before={"subscriptions": [{**line, "status": "validated"}]},
        after={"subscriptions": [{**line, "status": "deactivated"}]},
    )
    bump_revision(session, memberships=[(user_id, structure_id)])
    notify(
        session,
        user,
        f"Subscription on {structure.designation} revoked",
        f"A manager revoked your subscription on {structure.designation}: "
        f"{lines_named(session, rt, [(sub.space_code, sub.service_id, sub.level)])}.",
    )
    commit(session, rt)
