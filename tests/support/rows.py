"""Facts written straight into the database with the models (accounts,
attachments, subscriptions, client applications), for what no workflow hands
out in the test at hand, and the policy revision read back."""

from __future__ import annotations

import datetime as dt
import itertools

from authz import roles
from authz.workflows import clients
from authz.workflows.records import bump_revision, current_revision
from models import Attachment, Subscription, User

_client_numbers = itertools.count(1)


def yesterday() -> dt.date:
    """The day before `authz.roles.today()`: a start date already in force."""
    return roles.today() - dt.timedelta(days=1)


def user_row(
    login_email: str, first_name: str, last_name: str, *, status: str = "active", **fields
) -> User:
    """An account (a person, active, mailed at its login email, unless told
    otherwise), as the sign-up or another process would leave it."""
    return User(
        login_email=login_email,
        contact_email=fields.pop("contact_email", login_email),
        first_name=first_name,
        last_name=last_name,
        status=status,
        **fields,
    )


def attachment_row(
    user_id: int,
    structure_id: int,
    role: str = "simple",
    *,
    status: str = "validated",
    service_id: int | None = None,
    valid_from: dt.date | None = None,
    valid_until: dt.date | None = None,
) -> Attachment:
    """An attachment, in force since yesterday unless dated otherwise."""
    return Attachment(
        user_id=user_id,
        structure_id=structure_id,
        role=role,
        status=status,
        service_id=service_id,
        valid_from=valid_from or yesterday(),
        valid_until=valid_until,
    )


def subscription_row(
    user_id: int,
    structure_id: int,
    space: str,
    level: str,
    *,
    service_id: int | None = None,
    granted_by: int | None = None,
) -> Subscription:
    """A validated subscription."""
    return Subscription(
        user_id=user_id,
        structure_id=structure_id,
        space_code=space,
        level=level,
        service_id=service_id,
        status="validated",
        granted_by_id=granted_by,
    )


def add_attachment(rt, user_id: int, structure_id: int, role: str = "simple", **fields) -> None:
    """An attachment row (`attachment_row`), committed without a policy revision
    bump: what the decision index does not hear of."""
    with rt.sessions() as s:
        s.add(attachment_row(user_id, structure_id, role, **fields))
        s.commit()


def grant(
    rt,
    user_id: int,
    structure_id: int,
    *,
    role: str = "simple",
    service_id: int | None = None,
    subscriptions: tuple[tuple[str, str, int | None], ...] = (),
) -> int:
    """A validated attachment in force since yesterday and validated
    subscriptions (space, level, service id), as a manager's validation would
    leave them, with the policy revision bumped in the same transaction. The
    revision it was committed at."""
    with rt.sessions() as s:
        s.add(attachment_row(user_id, structure_id, role, service_id=service_id))
        for space, level, sub_service in subscriptions:
            s.add(subscription_row(user_id, structure_id, space, level, service_id=sub_service))
        revision = bump_revision(s, memberships=[(user_id, structure_id)])
        s.commit()
        return revision


def subscribe(
    rt, user_id: int, structure_id: int, space: str, level: str, *, granted_by: int
) -> int:
    """A validated subscription (as a validated request leaves it), with its
    revision bump; its id."""
    with rt.sessions() as s:
        sub = subscription_row(user_id, structure_id, space, level, granted_by=granted_by)
        s.add(sub)
        bump_revision(s, memberships=[(user_id, structure_id)])
        s.commit()
        return sub.id


def set_status(rt, model, row_id: int, status: str) -> None:
    """Change a row's status behind the workflows' back (no revision bump)."""
    with rt.sessions() as s:
        s.get(model, row_id).status = status
        s.commit()


def revision(rt) -> int:
    """The latest committed policy revision."""
    with rt.sessions() as s:
        return current_revision(s)


def client_key(rt) -> str:
    """The API key of a new client application (each with a name of its own)."""
    with rt.sessions() as s:
        _, key = clients.create_client(s, rt, f"portal-{next(_client_numbers)}")
    return key


def key_headers(rt) -> dict[str, str]:
    """The headers a new client application calls with."""
    return {"Authorization": f"Bearer {client_key(rt)}"}
