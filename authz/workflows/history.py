"""The history of a structure: every manager action, read-only through the API."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import HistoryEntry, User

from ..errors import Forbidden, NotFound
from ..pagination import Page, paginate
from ..runtime import Runtime
from .access import authorize


def list_entries(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    action: str | None = None,
    user_id: int | None = None,
    page: int,
    page_size: int,
) -> Page:
    """Entries of a structure, newest first, filtered by period, action (exact,
    or a prefix ending in '.') and user (actor or target).

    Raises NotFound, Forbidden (history.read not allowed).
    """
    authorize(session, rt, actor, structure_id, "history.read")
    stmt = select(HistoryEntry).where(HistoryEntry.structure_id == structure_id)
    if since:
        stmt = stmt.where(HistoryEntry.created_at >= since)
    if until:
        stmt = stmt.where(HistoryEntry.created_at < until)
    if action:
        # A literal, case-sensitive prefix on every backend (LIKE would read '%'
        # and '_' as wildcards, and ignores case on SQLite).
        stmt = stmt.where(
            func.substr(HistoryEntry.action, 1, len(action)) == action
            if action.endswith(".")
            else HistoryEntry.action == action
        )
    if user_id is not None:
        stmt = stmt.where(
            (HistoryEntry.actor_id == user_id) | (HistoryEntry.target_user_id == user_id)
        )
    return paginate(
        session,
        stmt.order_by(HistoryEntry.created_at.desc(), HistoryEntry.id.desc()),
        page=page,
        page_size=page_size,
    )


def get_entry(session: Session, rt: Runtime, actor: User, entry_id: int) -> HistoryEntry:
    """One entry with its detail, for those who may read its structure's history.

    Raises NotFound (unknown, platform-level, or not readable by the actor).
    """
    entry = session.get(HistoryEntry, entry_id)
    if entry is None or entry.structure_id is None:
        raise NotFound("No such history entry.")
    try:
        authorize(session, rt, actor, entry.structure_id, "history.read")
    except (NotFound, Forbidden) as exc:  # the same answer as a missing entry
        raise NotFound("No such history entry.") from exc
    return entry
