"""Side effects every state change writes in its own transaction: the policy
revision bump, the history entry and the mail (outbox rows, `notify` for a
mail to a user), then the commit that wakes the mail sender."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import event, insert, select, update
from sqlalchemy.orm import Session

from models import HistoryEntry, PolicyChange, PolicyRevision, User, utcnow

from .. import mail

# Every action a history entry records, and whether it changes who may do what
# (True: the review report lists it among the "changes of rights"). record()
# refuses an action missing here, so the table stays complete.
HISTORY_ACTIONS: dict[str, bool] = {
    # accounts
    "account.created": False,
    "account.deactivated": True,
    "account.reactivated": True,
    "account.closed": True,
    "user.updated": False,
    # platform roles and client applications (no right on a structure)
    "operator.appointed": False,
    "security_reviewer.appointed": False,
    "client.created": False,
    "client.revoked": False,
    # structures, services, opened spaces
    "structure.created": True,
    "structure.registered": True,
    "structure.updated": True,
    "structure.identifier_changed": True,
    "structure.created_from_identifier_change": True,
    "service.created": True,
    "service.updated": True,
    "spaces.updated": True,
    # attachments and principals
    "attachment_request.created": False,
    "attachment_request.validated": True,
    "attachment_request.refused": False,
    "attachment.created": True,
    "attachment.deleted": True,
    "attachment.left": True,  # the person left the structure themself
    "attachment.role_changed": True,
    "attachment.services_added": True,
    "attachment.services_removed": True,  # the rows become deactivated
    # invitations (they grant nothing until accepted)
    "invitation.created": False,
    "invitation.accepted": True,
    "invitation.refused": False,
    "invitation.withdrawn": False,
    "invitation.expired": False,
    "principal.designated": True,
    "principal.appointed": True,
    # subscriptions
    "subscription_request.created": False,
    "subscription_request.validated": True,
    # the structure's sole manager validated their own request (nobody else could)
    "subscription_request.self_validated": True,
    "subscription_request.refused": False,
    "subscriptions.granted": True,  # written by the demo loader only (authz/demo.py)
    "subscription.revoked": True,  # one line taken back by a manager
    # technical users
    "technical_user.created": True,
    "technical_user.secret_reset": True,
}
RIGHTS_ACTIONS = frozenset(action for action, rights in HISTORY_ACTIONS.items() if rights)


def bump_revision(
    session: Session,
    *,
    users: Iterable[int] = (),
    structures: Iterable[int] = (),
    memberships: Iterable[tuple[int, int]] = (),
    policy: bool = False,
) -> int:
    """Increment the policy revision inside the caller's transaction and log what
    changed (users, structures, (user, structure) pairs) so every worker updates
    just that part of its decision index. Nothing named: the whole index reloads.
    `policy`: the policy set changed (authz.review.policy_versions), no fact.
    """
    revision = session.execute(
        update(PolicyRevision)
        .where(PolicyRevision.id == 1)
        .values(revision=PolicyRevision.revision + 1, updated_at=utcnow())
        .returning(PolicyRevision.revision)
    ).scalar_one()
    rows = (
        [{"scope": "user", "a": u, "b": None} for u in set(users)]
        + [{"scope": "structure", "a": s, "b": None} for s in set(structures)]
        + [{"scope": "membership", "a": u, "b": s} for u, s in set(memberships)]
    )
    if policy:
        rows.append({"scope": "policy", "a": None, "b": None})
    if not rows:
        rows = [{"scope": "all", "a": None, "b": None}]
    session.execute(insert(PolicyChange), [{"revision": revision, **r} for r in rows])
    session.info[_PENDING] = revision
    return revision


# The revision a session's transaction bumped is "pending" until it commits; then
# it is the session's `committed_revision` (the highest, when a bulk workflow
# commits several transactions), which the API answers writes with
# (api/revisions.py). A rollback forgets it: that revision never existed.
_PENDING = "pending_revision"
COMMITTED = "committed_revision"


@event.listens_for(Session, "after_commit")
def _revision_committed(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending is not None:
        session.info[COMMITTED] = max(pending, session.info.get(COMMITTED, 0))


@event.listens_for(Session, "after_rollback")
def _revision_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


def committed_revision(session: Session) -> int | None:
    """The policy revision the session's transactions committed last (the
    highest), or None when none of them changed rights."""
    revision = session.info.get(COMMITTED)
    return int(revision) if revision is not None else None


def current_revision(session: Session) -> int:
    return session.execute(
        select(PolicyRevision.revision).where(PolicyRevision.id == 1)
    ).scalar_one()


def record(
    session: Session,
    *,
    action: str,
    actor: User | None,
    structure_id: int | None,
    target_user_id: int | None = None,
    comment: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    request_kind: str | None = None,
    request_id: int | None = None,
) -> HistoryEntry:
    """Add the history entry of a change to the caller's transaction.

    Raises ValueError for an action HISTORY_ACTIONS does not declare (a
    programming error: declare it, saying whether it changes rights).
    """
    if action not in HISTORY_ACTIONS:
        raise ValueError(f"history action {action!r} is not declared in HISTORY_ACTIONS")
    entry = HistoryEntry(
        action=action,
        actor_id=actor.id if actor else None,
        structure_id=structure_id,
        target_user_id=target_user_id,
        comment=comment,
        before=before,
        after=after,
        request_kind=request_kind,
        request_id=request_id,
    )
    session.add(entry)
    return entry


def queue_mail(session: Session, *, kind: str, to: str, subject: str, body: str) -> None:
    """Put a mail in the outbox, in the caller's transaction."""
    mail.enqueue(session, kind=kind, to=to, subject=subject, body=body)
    session.info["mail_queued"] = True


def notify(session: Session, user: User, subject: str, body: str) -> None:
    """Mail `user` at their contact email, greeted by name (an outbox row in the
    caller's transaction, like queue_mail)."""
    queue_mail(
        session,
        kind="notification",
        to=user.contact_email,
        subject=subject,
        body=f"Hello {user.first_name} {user.last_name},\n\n{body}\n",
    )


def commit(session: Session, rt: Any) -> None:
    """Commit the caller's transaction, then wake the mail sender if it queued mail."""
    queued = session.info.pop("mail_queued", False)
    session.commit()
    if queued and rt.dispatcher is not None:
        rt.dispatcher.kick()
