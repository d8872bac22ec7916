"""Pages of query results, the same shape for every list of the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session


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
