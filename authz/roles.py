"""Roles on a structure: the one place for their ranks, for "in force", for
"today", and for which role counts when a user holds several.

The rule, used by the workflows (asking the database) and by the decision index
(asking memory) alike:

- Only a *validated* attachment gives a role. It is *in force* on a day when
  the day lies between `valid_from` and `valid_until`, both inclusive (no
  `valid_until`: open-ended).
- A user may hold several attachments on one structure (the whole structure,
  some services): **the strongest role counts**, principal > secondary >
  simple > technical.
- "Today" is the UTC date, on every process and backend.

One variant ignores the dates on purpose (`validated_role`): what a manager
keeps, changes or must not touch (a principal) is the role written on the
user's validated attachments, even one that starts next week or has ended.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Protocol

from sqlalchemy import ColumnElement, and_, or_

from models import ROLES, Attachment

# principal 4, secondary 3, simple 2, technical 1 (ROLES is strongest first).
# No role ranks 0, below every role.
RANK: dict[str, int] = {role: rank for rank, role in enumerate(reversed(ROLES), start=1)}


class Dated(Protocol):
    """An attachment's dates (an Attachment row, or its copy in the index)."""

    valid_from: dt.date
    valid_until: dt.date | None


class Held(Dated, Protocol):
    """An attachment row: its role, its status and its dates."""

    role: str
    status: str


def today(now: dt.datetime | None = None) -> dt.date:
    """The UTC date of `now` (default: the current time): the day attachments
    are judged in force on."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()


def in_force(attachment: Dated, on: dt.date) -> bool:
    """Whether the attachment's dates cover `on` (both ends inclusive). Its
    status is the caller's business: only validated attachments count."""
    return attachment.valid_from <= on and (
        attachment.valid_until is None or on <= attachment.valid_until
    )


def in_force_condition(on: dt.date) -> ColumnElement[bool]:
    """SQL condition on Attachment: validated and in force on `on` (the same
    rule as `in_force`, for queries)."""
    return and_(
        Attachment.status == "validated",
        Attachment.valid_from <= on,
        or_(Attachment.valid_until.is_(None), Attachment.valid_until >= on),
    )


def strongest(roles: Iterable[str]) -> str | None:
    """The strongest of `roles`, or None when there is none."""
    return max(roles, key=RANK.__getitem__, default=None)


def role_in_force(attachments: Iterable[Held], on: dt.date) -> str | None:
    """The role a user holds on a structure on day `on`: the strongest among
    their validated attachments in force that day, or None."""
    return strongest(a.role for a in attachments if a.status == "validated" and in_force(a, on))


def validated_role(attachments: Iterable[Held]) -> str | None:
    """The role written on a user's validated attachments on a structure,
    whatever their dates (the strongest, should they differ), or None.

    This is the role a manager keeps when validating a new request, and the one
    that makes a user the principal nobody may re-attach or remove, even when
    the attachment starts later or has ended: the workflows keep every
    validated attachment of a user on a structure on the same role.
    """
    return strongest(a.role for a in attachments if a.status == "validated")
