"""Taking attachment scopes away from a user without removing them: the rows
become `deactivated` (the guide's "Désactivé") and the subscriptions that only
those scopes carried are deactivated with them, so that nothing granted
through a withdrawn scope survives, nor comes back with a later validation.

A library for the workflows that narrow rights (attachments.validate_request
when the manager unticks a service, members.remove_service, the deactivation
of a service in structures.update_service); each writes its own history entry,
mail and revision bump.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import Attachment, Service, Subscription, utcnow

from ..runtime import Runtime


def withdraw(
    session: Session, user_id: int, structure_id: int, scopes: Iterable[int | None]
) -> list[int | None]:
    """Deactivate the user's validated attachments on `scopes` (None: the
    whole structure) and their validated subscriptions on the services among
    them. An all-services subscription stays: it applies only where an
    attachment in force still covers the question. Returns the scopes that
    were withdrawn (validated before), in the caller's transaction."""
    scopes = list(scopes)
    rows = session.scalars(
        select(Attachment).where(
            Attachment.user_id == user_id,
            Attachment.structure_id == structure_id,
            Attachment.status == "validated",
        )
    ).all()
    withdrawn = [row.service_id for row in rows if row.service_id in scopes]
    for row in rows:
        if row.service_id in withdrawn:
            row.status = "deactivated"
    services = [s for s in withdrawn if s is not None]
    if services:
        session.execute(
            update(Subscription)
            .where(
                Subscription.user_id == user_id,
                Subscription.structure_id == structure_id,
                Subscription.service_id.in_(services),
                Subscription.status == "validated",
            )
            .values(status="deactivated", updated_at=utcnow())
            .execution_options(synchronize_session="fetch")
        )
    session.flush()
    return withdrawn


def lines_named(session: Session, rt: Runtime, lines: Iterable[tuple[str, int | None, str]]) -> str:
    """Subscription lines (space code, service or None, level) as people read
    them in a mail: the space's label, the services concerned, the level —
    "Issued invoices (Factures émises), all services: consult; Works invoices
    (Factures de travaux), service ATELIER (Atelier): modify"."""
    named = []
    for space, service_id, level in lines:
        entry = rt.policies.space(space)
        where = (
            "all services"
            if service_id is None
            else f"service {scope_names(session, [service_id])}"
        )
        named.append(f"{entry.label if entry else space}, {where}: {level}")
    return "; ".join(named)


def scope_names(session: Session, scopes: Iterable[int | None]) -> str:
    """The scopes as a manager or a user reads them: "the whole structure",
    or the services' codes and labels."""
    names = []
    for scope in scopes:
        if scope is None:
            names.append("the whole structure")
        else:
            service = session.get(Service, scope)
            names.append(f"{service.code} ({service.label})" if service else f"service {scope}")
    return ", ".join(names)
