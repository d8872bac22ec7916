"""The change feed: what changed at each policy revision, for client
applications that keep decisions in a cache (`GET /v1/changes`).

It reads the policy change log the decision index itself follows
(`policy_changes`, written by every revision bump in the same transaction as
the change: authz/workflows/records.py). Every bump writes at least one row,
so the revisions of the log are contiguous: revision N+1 is in the log or the
log no longer reaches back to it (pruned by `authz maintenance` after
AUTHZ_CHANGE_LOG_RETENTION_DAYS), and then the caller must resynchronise.

What each change names (`kind`):
- `user`: something about that user changed everywhere (status, deactivation);
- `structure`: that structure changed (status, services, opened spaces);
- `membership`: that user's attachments or subscriptions on that structure;
- `policy`: a new policy version is in force (`policy_version`), no fact changed;
- `all`: anything may have changed (a bulk load): drop every cached decision.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import PolicyChange, PolicyRevision, PolicyVersion

from ..errors import Forbidden, Gone
from ..runtime import Runtime
from .checks import Caller

# Most revisions one page gives, and how often a long poll looks for a new one.
LIMIT_MAX = 1000
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Change:
    kind: str
    user_id: int | None = None
    structure_id: int | None = None
    policy_version: int | None = None


@dataclass(frozen=True)
class RevisionChanges:
    """Everything one revision changed, and when it was committed."""

    revision: int
    committed_at: dt.datetime
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class ChangePage:
    """Revisions after `after_revision`, oldest first. Ask the next page with
    `next_after_revision`; `more`: later revisions are already committed."""

    revisions: list[RevisionChanges]
    next_after_revision: int
    latest_revision: int
    more: bool


def read_changes(
    rt: Runtime,
    caller: Caller,
    *,
    after_revision: int | None = None,
    limit: int = 100,
    wait: float = 0.0,
) -> ChangePage:
    """The revisions committed after `after_revision` (at most `limit`); none
    yet: wait up to `wait` seconds (capped at AUTHZ_CHANGES_WAIT_MAX_SECONDS) for
    one, looking every POLL_SECONDS. `after_revision` None: no change, the
    position to follow the feed from (the latest revision).

    Raises Forbidden `clients_only` (a person's token: the feed names other
    users), Gone `changes_gone` (the log no longer reaches after_revision + 1,
    or the database is behind it: the caller must resynchronise).
    """
    if caller.client_id is None:
        raise Forbidden(
            "The change feed is for client applications (an API key).", code="clients_only"
        )
    limit = max(1, min(limit, LIMIT_MAX))
    deadline = time.monotonic() + max(0.0, min(wait, rt.settings.changes_wait_max_seconds))
    while True:
        with rt.read_sessions() as session:
            page = changes_after(session, after_revision, limit)
        left = deadline - time.monotonic()
        if page.revisions or after_revision is None or left <= 0:
            return page
        time.sleep(min(POLL_SECONDS, left))


def changes_after(session: Session, after_revision: int | None, limit: int) -> ChangePage:
    """One page of the log (see read_changes), read in one transaction."""
    latest = int(
        session.execute(select(PolicyRevision.revision).where(PolicyRevision.id == 1)).scalar_one()
    )
    if after_revision is None or after_revision == latest:
        return ChangePage([], latest, latest, False)
    if after_revision > latest:
        raise Gone(
            f"Revision {after_revision} is ahead of the latest ({latest}): the database "
            "was restored or failed over. Drop what you cached and start again.",
            code="changes_gone",
        )
    upto = min(after_revision + limit, latest)
    rows = session.execute(
        select(
            PolicyChange.revision,
            PolicyChange.scope,
            PolicyChange.a,
            PolicyChange.b,
            PolicyChange.created_at,
        )
        .where(PolicyChange.revision > after_revision, PolicyChange.revision <= upto)
        .order_by(PolicyChange.revision, PolicyChange.id)
    ).all()
    if not rows or rows[0].revision != after_revision + 1:
        raise Gone(
            f"The change log no longer reaches revision {after_revision + 1}. Drop what "
            "you cached and start again from the latest revision.",
            code="changes_gone",
        )
    versions = dict(
        session.execute(
            select(PolicyVersion.revision, PolicyVersion.version).where(
                PolicyVersion.revision > after_revision, PolicyVersion.revision <= upto
            )
        ).all()
    )
    revisions: dict[int, RevisionChanges] = {}
    for row in rows:
        entry = revisions.setdefault(row.revision, RevisionChanges(row.revision, row.created_at))
        entry.changes.append(_change(row.scope, row.a, row.b, versions.get(row.revision)))
    return ChangePage(list(revisions.values()), upto, latest, upto < latest)


def _change(scope: str, a: int | None, b: int | None, version: int | None) -> Change:
    if scope == "user":
        return Change("user", user_id=a)
    if scope == "structure":
        return Change("structure", structure_id=a)
    if scope == "membership":
        return Change("membership", user_id=a, structure_id=b)
    if scope == "policy":
        return Change("policy", policy_version=version)
    return Change("all")
