"""What an operator types to name a user or a structure (an id, a login email,
an identifier value), resolved to the row's id. For the command line's tools;
the API takes ids only."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Structure, User

from ..errors import Invalid, NotFound


def user_id(session: Session, value: str) -> int:
    """A user given by id or login email. Raises NotFound."""
    found = (
        session.get(User, int(value))
        if value.isdigit()
        else session.scalar(select(User).where(User.login_email == value.lower()))
    )
    if found is None:
        raise NotFound(f"No user {value!r} (give an id or a login email).")
    return found.id


def structure_id(session: Session, value: str) -> int:
    """A structure given by id or identifier value. Raises NotFound, or Invalid
    when several structures (of different identifier types) share the value."""
    if value.isdigit() and session.get(Structure, int(value)) is not None:
        return int(value)
    found = session.scalars(select(Structure.id).where(Structure.identifier_value == value)).all()
    if not found:
        raise NotFound(f"No structure {value!r} (give an id or an identifier value).")
    if len(found) > 1:
        raise Invalid(f"Several structures have the identifier value {value!r}: give an id.")
    return found[0]
