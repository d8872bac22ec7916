"""Pages of query results, the same shape for every list of the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session


@dataclass(frozen=True)
class Page:
    items: list[Any]
    page: int
    page_size: int
    total: int


def paginate(session: Session, stmt: Select, *, page: int, page_size: int) -> Page:
    """Run `stmt` (which must have a deterministic ORDER BY) for one page."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    items = list(session.scalars(stmt.limit(page_size).offset((page - 1) * page_size)))
    return Page(items=items, page=page, page_size=page_size, total=total or 0)


def paginate_keys(
    session: Session,
    stmt: Select,
    *,
    key: InstrumentedAttribute[Any],
    order_by: tuple[Any, ...],
    page: int,
    page_size: int,
) -> Page:
    """One page of the rows of the one entity `stmt` selects, ordered by
    `order_by` (which must end with that entity's unique `key`, e.g. its
    primary key): the same page as paginate(stmt.order_by(*order_by)), found
    by sorting the ordering columns and keys only, then loading only the rows
    of the page by key (only the key: `stmt`'s loader options do not apply):
    a late page of a long list does not sort whole rows
    (docs/performance.md, "Manager API")."""
    offset = (page - 1) * page_size
    # The page's keys and the total in one statement (a window count is taken
    # before LIMIT / OFFSET): the filter runs once, not once for the count and
    # once for the page (docs/performance.md, "Manager API"). Past the last
    # page no row carries the total: it is counted then.
    found = session.execute(
        stmt.with_only_columns(key, func.count().over())
        .order_by(*order_by)
        .limit(page_size)
        .offset(offset)
    ).all()
    keys = [row[0] for row in found]
    if found:
        total = found[0][1]
    elif offset == 0:
        total = 0
    else:
        keys_stmt = stmt.with_only_columns(key).order_by(None)
        total = session.scalar(select(func.count()).select_from(keys_stmt.subquery()))
    rows = {
        getattr(row, key.key): row
        for row in session.scalars(select(key.class_).where(key.in_(keys)))
    }
    return Page(items=[rows[k] for k in keys], page=page, page_size=page_size, total=total or 0)
