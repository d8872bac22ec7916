"""Finding an account to attach, across the whole portal (the guide's direct
attachment: "search a user, at least one criterion, tick, validate").

A manager who may attach users to a structure finds a person by their exact
login email, or by last name AND first name together (case and accents
ignored, whole names, not parts): never by a part, so the portal cannot be
listed. They see only id, names and login email. Each search is counted per
caller (authz/workflows/throttle.py counters, key `candidates:<user id>`,
CANDIDATE_SEARCHES per AUTHZ_LOGIN_LOCKOUT_SECONDS window) and logged as one
line of `authz.candidates` (docs/manager-guide.md, "Find an account to
attach")."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import User, utcnow

from ..errors import Invalid
from ..runtime import Runtime
from ..textkeys import fold
from . import throttle
from .access import authorize
from .accounts import find_by_login

log = logging.getLogger("authz.candidates")

# Searches one caller may make in a window; then 429 until it ends.
CANDIDATE_SEARCHES = 30
# At most this many people answer one search (homonyms).
CANDIDATES_MAX = 20


def find(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    *,
    login_email: str | None = None,
    last_name: str | None = None,
    first_name: str | None = None,
) -> list[User]:
    """Person accounts (not closed) matching the exact login email, or both
    names; by last name, first name, id.

    Raises NotFound / Forbidden (authorize, `attachments.create`), Invalid
    `criterion_required`, TooManyAttempts (the caller's searches in the window).
    """
    authorize(session, rt, actor, structure_id, "attachments.create")
    last, first = fold(last_name), fold(first_name)
    email = (login_email or "").strip()
    if not email and not (last and first):
        raise Invalid(
            "Give the exact login email, or the last name and the first name together.",
            code="criterion_required",
            errors={"last_name": ["With first_name."], "first_name": ["With last_name."]},
        )
    throttle.reserve_keys(session, rt, [(f"candidates:{actor.id}", CANDIDATE_SEARCHES)], utcnow())
    if email:
        user = find_by_login(session, email)
        found = [user] if user is not None else []
    else:
        found = list(
            session.scalars(
                select(User)
                .where(User.last_name_key == last, User.first_name_key == first)
                .order_by(User.id)
                .limit(CANDIDATES_MAX)
            )
        )
    found = [u for u in found if u.kind == "person" and u.status != "closed"]
    log.info(
        "candidate search",
        extra={
            "actor_id": actor.id,
            "structure_id": structure_id,
            "by": "login_email" if email else "names",
            "found": len(found),
        },
    )
    return found
