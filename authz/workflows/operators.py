"""Platform roles: person accounts with the platform-wide role 'operator' or
'security_reviewer', given only from the command line."""

from __future__ import annotations

from typing import Literal

from sqlalchemy.orm import Session

from models import User

from ..errors import Conflict
from ..runtime import Runtime
from . import accounts
from .records import bump_revision, commit, record

OPERATOR = "operator"
REVIEWER = "security_reviewer"
# created: a new pending account, its activation mail queued;
# promoted: an existing person account now holds the role;
# unchanged: the account already held it.
Outcome = Literal["created", "promoted", "unchanged"]


def create_operator(
    session: Session,
    rt: Runtime,
    email: str,
    *,
    first_name: str = "Platform",
    last_name: str = "Operator",
    role: str = OPERATOR,
) -> tuple[User, Outcome]:
    """Make `email` a platform operator (or, with role=REVIEWER, a security
    reviewer) and say what that took. A new account is
    pending and gets the normal activation mail; an existing person account keeps
    its status and password and gains the role. Commits.

    Raises Invalid (not a valid email address), Conflict `not_a_person` (the login
    belongs to a technical user), Conflict `account_closed`, Conflict
    `other_platform_role` (the account holds the other platform role: the two are
    kept apart).
    """
    user = accounts.find_by_login(session, accounts.normalize_email(email))
    if user is None:
        user = accounts.create_account(
            session, rt, login_email=email, first_name=first_name, last_name=last_name
        )
        outcome: Outcome = "created"
    elif user.kind != "person":
        raise Conflict("This login belongs to a technical user, not a person.", code="not_a_person")
    elif user.status == "closed":
        raise Conflict("This account is closed.", code="account_closed")
    elif user.platform_role == role:
        return user, "unchanged"
    elif user.platform_role is not None:
        raise Conflict(
            f"This account is already a {user.platform_role}.", code="other_platform_role"
        )
    else:
        outcome = "promoted"
    before = user.platform_role
    user.platform_role = role
    session.flush()
    record(
        session,
        action=f"{role}.appointed",
        actor=None,
        structure_id=None,
        target_user_id=user.id,
        before={"platform_role": before},
        after={"platform_role": role},
    )
    bump_revision(session, users=[user.id])
    commit(session, rt)
    return user, outcome
