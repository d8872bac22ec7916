"""User administration by managers: search the users of one's structures, read
and modify them, (re)send their activation links, export them as CSV, list a
structure's users, and create the account of a person to attach.

Who sees whom: a manager sees a user when the user has an attachment that is
not deleted (any other status, the rows of pending requests included) on a
structure where the manager may `users.manage`. To everyone else the user does
not exist: NotFound, the same answer as for an unknown id. What is shown of a
visible user (structures, attachments, CSV rows) is limited to those same
structures.

Workflows that change something own their transaction (commit, or raise and
leave nothing behind).
"""

from __future__ import annotations

import csv
import io
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from models import Attachment, AttachmentRequest, Service, Structure, User

from ..errors import Forbidden, Invalid, NotFound
from ..pagination import Page, paginate, paginate_keys
from ..roles import RANK, role_in_force, today, validated_role
from ..runtime import Runtime
from ..textkeys import fold
from . import accounts
from .access import authorize, managed_structures, role_on
from .records import commit, queue_mail, record
from .request_flow import PROCESS, Outcome, bulk

log = logging.getLogger("authz.users")

MANAGE = "users.manage"
LIST = "users.list"
# A cell starting with one of these is a formula to a spreadsheet: prefixed with '.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
EXPORT_COLUMNS = (
    "id",
    "login_email",
    "contact_email",
    "last_name",
    "first_name",
    "phone",
    "status",
    "structure_designation",
    "structure_identifier_type",
    "structure_identifier_value",
    "service_code",
    "role",
    "attachment_status",
    "valid_from",
    "valid_until",
)
# How lists of users are ordered: by name, then id (the key, for a stable order).
BY_NAME = (User.last_name_key, User.first_name_key, User.id)
# Users read per query while exporting; the transaction ends between chunks.
EXPORT_CHUNK = 200


@dataclass(frozen=True)
class AttachmentLine:
    """One attachment row with its service (None: the whole structure)."""

    attachment: Attachment
    service: Service | None


@dataclass(frozen=True)
class Membership:
    """A structure a user is attached to, their role there and their attachment rows."""

    structure: Structure
    role: str | None
    attachments: list[AttachmentLine]


@dataclass(frozen=True)
class Member:
    """A user attached to a structure, their role there and their attachment rows."""

    user: User
    role: str | None
    attachments: list[AttachmentLine]


@dataclass(frozen=True)
class Holding:
    """What a user holds on a structure now: their validated role and their
    validated attachment rows (the whole structure, or each service held),
    with their dates — in force today or from a later start date."""

    user_id: int
    structure_id: int
    role: str | None
    attachments: list[AttachmentLine]

    @property
    def whole_structure(self) -> bool:
        return any(line.service is None for line in self.attachments)

    @property
    def service_ids(self) -> list[int]:
        return sorted(line.service.id for line in self.attachments if line.service)


@dataclass(frozen=True)
class UserDetail:
    """A visible user and their pending attachment requests the caller may process."""

    user: User
    pending_attachment_request_ids: list[int]


# --- visibility -----------------------------------------------------------------


def _seen_attachments(rt: Runtime, actor: User) -> ColumnElement[bool]:
    """Condition on Attachment: not deleted, on a structure where `actor` may
    manage users."""
    return and_(
        Attachment.structure_id.in_(managed_structures(rt, actor, MANAGE)),
        Attachment.status != "deleted",
    )


def _visible(rt: Runtime, actor: User) -> ColumnElement[bool]:
    """Condition on User: the users `actor` sees (see the module docstring)."""
    return User.id.in_(select(Attachment.user_id).where(_seen_attachments(rt, actor)))


def get_visible(session: Session, rt: Runtime, actor: User, user_id: int) -> User:
    """The user, if `actor` sees them. Raises NotFound (unknown or invisible)."""
    user = session.scalar(select(User).where(User.id == user_id, _visible(rt, actor)))
    if user is None:
        raise NotFound("No such user.")
    return user


def _role(lines: Iterable[AttachmentLine]) -> str | None:
    """The role the rows give today (authz/roles.py: role_in_force), or None."""
    return role_in_force((line.attachment for line in lines), today())


def _lines(
    session: Session, where: ColumnElement[bool]
) -> dict[tuple[int, int], list[AttachmentLine]]:
    """Attachment rows matching `where`, by (user id, structure id); the whole
    structure first, then services by code."""
    rows = session.execute(
        select(Attachment, Service)
        .outerjoin(Service, Service.id == Attachment.service_id)
        .where(where)
        .order_by(Attachment.service_id.is_not(None), Service.code, Attachment.id)
    ).all()
    found: dict[tuple[int, int], list[AttachmentLine]] = defaultdict(list)
    for attachment, service in rows:
        found[(attachment.user_id, attachment.structure_id)].append(
            AttachmentLine(attachment, service)
        )
    return found


# --- search and reading -----------------------------------------------------------


def search(
    session: Session,
    rt: Runtime,
    actor: User,
    *,
    last_name: str | None = None,
    first_name: str | None = None,
    login_email: str | None = None,
    status: str | None = None,
    designation: str | None = None,
    service: str | None = None,
    page: int,
    page_size: int,
) -> Page:
    """The users `actor` sees that match every given criterion, by last name,
    then first name. Names, designation and service (code or label) match as
    substrings, ignoring case and accents; the login email as a substring,
    ignoring case; the status exactly. Designation and service apply to the
    same attachment; an attachment to the whole structure counts for every
    service of it.

    Raises Invalid `criterion_required` (no criterion given).
    """
    last, first, structure_term, service_term = (
        fold(last_name),
        fold(first_name),
        fold(designation),
        fold(service),
    )
    email = (login_email or "").strip().lower()
    if not any((last, first, email, status, structure_term, service_term)):
        raise Invalid("Give at least one search criterion.", code="criterion_required")
    seen = select(Attachment.user_id).where(_seen_attachments(rt, actor))
    if structure_term:
        seen = seen.join(Structure, Structure.id == Attachment.structure_id).where(
            Structure.designation_key.contains(structure_term, autoescape=True)
        )
    if service_term:
        # The services that match (few), then the attachments on one of them or
        # on the whole of a structure that has one: not a join of every
        # attachment with every service of its structure (docs/performance.md,
        # "Manager API").
        matching = select(Service.id, Service.structure_id).where(
            or_(
                Service.code_key.contains(service_term, autoescape=True),
                Service.label_key.contains(service_term, autoescape=True),
            )
        )
        seen = seen.where(
            or_(
                and_(
                    Attachment.service_id.is_(None),
                    Attachment.structure_id.in_(matching.with_only_columns(Service.structure_id)),
                ),
                Attachment.service_id.in_(matching.with_only_columns(Service.id)),
            )
        )
    stmt = select(User).where(User.id.in_(seen))
    if last:
        stmt = stmt.where(User.last_name_key.contains(last, autoescape=True))
    if first:
        stmt = stmt.where(User.first_name_key.contains(first, autoescape=True))
    if email:
        stmt = stmt.where(User.login_email.contains(email, autoescape=True))
    if status:
        stmt = stmt.where(User.status == status)
    return paginate_keys(
        session, stmt, key=User.id, order_by=BY_NAME, page=page, page_size=page_size
    )


def get_user(session: Session, rt: Runtime, actor: User, user_id: int) -> UserDetail:
    """A visible user, with the ids of their pending attachment requests on
    structures where `actor` may process requests (to open with
    GET /v1/attachment-requests/{id}).

    Raises NotFound (unknown or invisible).
    """
    user = get_visible(session, rt, actor, user_id)
    pending = session.scalars(
        select(AttachmentRequest.id)
        .where(
            AttachmentRequest.user_id == user.id,
            AttachmentRequest.status == "pending",
            AttachmentRequest.structure_id.in_(
                managed_structures(rt, actor, PROCESS[AttachmentRequest])
            ),
        )
        .order_by(AttachmentRequest.id)
    ).all()
    return UserDetail(user, list(pending))


def user_structures(
    session: Session, rt: Runtime, actor: User, user_id: int, *, page: int, page_size: int
) -> Page:
    """The structures a visible user is attached to, among those where `actor`
    may manage users, by designation: the user's role there and every
    attachment row that is not deleted. One's own: every structure one is
    attached to, whatever one's role.

    Raises NotFound (unknown or invisible user).
    """
    if user_id == actor.id:
        user = actor
        seen = and_(Attachment.user_id == actor.id, Attachment.status != "deleted")
    else:
        user = get_visible(session, rt, actor, user_id)
        seen = and_(Attachment.user_id == user.id, _seen_attachments(rt, actor))
    found = paginate(
        session,
        select(Structure)
        .where(Structure.id.in_(select(Attachment.structure_id).where(seen)))
        .order_by(Structure.designation_key, Structure.id),
        page=page,
        page_size=page_size,
    )
    lines = _lines(session, and_(seen, Attachment.structure_id.in_([st.id for st in found.items])))
    items = [
        Membership(st, _role(lines[(user.id, st.id)]), lines[(user.id, st.id)])
        for st in found.items
    ]
    return Page(items=items, page=found.page, page_size=found.page_size, total=found.total)


def structure_users(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    *,
    status: str | None = None,
    page: int,
    page_size: int,
) -> Page:
    """The users attached to a structure, by last name: their role there and
    their attachment rows (every status but deleted, or only `status`).

    Raises NotFound (structure unknown or invisible), Forbidden
    `action_not_allowed` (the caller may not list its users).
    """
    authorize(session, rt, actor, structure_id, LIST)
    rows = and_(
        Attachment.structure_id == structure_id,
        Attachment.status == status if status else Attachment.status != "deleted",
    )
    found = paginate_keys(
        session,
        select(User).where(User.id.in_(select(Attachment.user_id).where(rows))),
        key=User.id,
        order_by=BY_NAME,
        page=page,
        page_size=page_size,
    )
    lines = _lines(session, and_(rows, Attachment.user_id.in_([u.id for u in found.items])))
    items = [
        Member(u, _role(lines[(u.id, structure_id)]), lines[(u.id, structure_id)])
        for u in found.items
    ]
    return Page(items=items, page=found.page, page_size=found.page_size, total=found.total)


def member(session: Session, user: User, structure_id: int) -> Member:
    """`user` on the structure: their role today and their attachment rows
    (every status but deleted). No authorisation: the caller's workflow
    checked it."""
    rows = and_(
        Attachment.structure_id == structure_id,
        Attachment.user_id == user.id,
        Attachment.status != "deleted",
    )
    lines = _lines(session, rows)[(user.id, structure_id)]
    return Member(user, _role(lines), lines)


def holding(session: Session, user_id: int, structure_id: int) -> Holding:
    """What `user_id` holds on the structure (see Holding). No authorisation:
    the caller's workflow checked it."""
    rows = and_(
        Attachment.structure_id == structure_id,
        Attachment.user_id == user_id,
        Attachment.status == "validated",
    )
    lines = _lines(session, rows)[(user_id, structure_id)]
    return Holding(user_id, structure_id, validated_role(line.attachment for line in lines), lines)


# --- changes --------------------------------------------------------------------


def _profile(user: User) -> dict[str, Any]:
    return {field: getattr(user, field) for field in accounts.PROFILE_FIELDS}


def owner_of(session: Session, user: User) -> int | None:
    """The structure that owns the account, or None. A structure owns an account
    when one of its managers created it for that structure
    (`created_for_structure_id`) and the account is attached nowhere else: no
    attachment row that is validated, pending or deactivated on another
    structure (a request made elsewhere counts: it writes pending rows). A
    person account only, without a platform role."""
    structure_id = user.created_for_structure_id
    if structure_id is None or user.kind != "person" or user.platform_role is not None:
        return None
    elsewhere = session.scalar(
        select(Attachment.id)
        .where(
            Attachment.user_id == user.id,
            Attachment.structure_id != structure_id,
            Attachment.status.in_(("validated", "pending", "deactivated")),
        )
        .limit(1)
    )
    return None if elsewhere is not None else structure_id


def update_user(
    session: Session, rt: Runtime, actor: User, user_id: int, changes: dict[str, Any]
) -> User:
    """A manager changes the contact email, names or phone (never the login
    email, which receives activation and password mails) of an account their
    structure owns (owner_of), where the person's role is not above their own
    (a secondary manager never edits the principal). The change is written in
    the structure's history, and the user is told at the contact email they had
    before.

    Raises NotFound (unknown or invisible), Forbidden `technical_user`
    (technical users are managed by the principal manager), `account_not_owned`
    (the account was not created by a structure the actor manages, or is
    attached elsewhere too), `higher_role`, Invalid (another field, or a bad
    contact email).
    """
    user = get_visible(session, rt, actor, user_id)
    if user.kind != "person":
        raise Forbidden(
            "Technical users are managed by the structure's principal manager.",
            code="technical_user",
        )
    owner = owner_of(session, user)
    if owner is None or owner not in session.scalars(managed_structures(rt, actor, MANAGE)).all():
        raise Forbidden(
            "Only the structure that created this account, while it is attached nowhere "
            "else, may change it; the person changes it themself (PATCH /v1/me).",
            code="account_not_owned",
        )
    theirs = validated_role(
        session.scalars(
            select(Attachment).where(
                Attachment.user_id == user.id, Attachment.structure_id == owner
            )
        )
    )
    if RANK.get(theirs or "", 0) > RANK.get(role_on(session, actor, owner) or "", 0):
        raise Forbidden(
            "You may not change the account of someone whose role is above yours.",
            code="higher_role",
        )
    before = _profile(user)
    accounts.apply_profile(user, changes)
    after = _profile(user)
    changed = [field for field in accounts.PROFILE_FIELDS if before[field] != after[field]]
    if changed:
        record(
            session,
            action="user.updated",
            actor=actor,
            structure_id=owner,
            target_user_id=user.id,
            comment="Modified",
            before={f: before[f] for f in changed},
            after={f: after[f] for f in changed},
        )
        queue_mail(
            session,
            kind="notification",
            to=before["contact_email"],
            subject="Your account details were changed",
            body=f"Hello {user.first_name} {user.last_name},\n\n"
            f"A manager of your structure changed these details of your account: "
            f"{', '.join(changed)}.\nIf this is not expected, contact your "
            f"structure's managers.\n",
        )
    commit(session, rt)
    return user


def send_activation_emails(
    session: Session, rt: Runtime, actor: User, user_ids: list[int]
) -> list[Outcome]:
    """Mail a new activation link to each visible pending person (their earlier
    links stop working), each in its own transaction. One outcome per id, in
    order: ok, or `not_found` (unknown or invisible), `account_not_pending`.
    """

    def one(user_id: int) -> None:
        accounts.send_activation(session, rt, get_visible(session, rt, actor, user_id))
        commit(session, rt)

    return bulk(session, user_ids, one)


def create_account_for(
    session: Session, rt: Runtime, actor: User, *, structure_id: int | None = None, **fields: Any
) -> User:
    """A manager creates the pending account of a person they want to attach to
    `structure_id` (the structure they act for): the activation link is mailed
    to the login email and "account.created" is written in the structure's
    history. The account records that structure (`created_for_structure_id`):
    its managers may attach it at once while it is pending, and modify it while
    the structure owns it (owner_of). The person is not attached yet: the
    manager attaches them next (attachments.attach_directly), which also makes
    them visible here.

    `fields`: those of accounts.create_account. Raises Invalid
    `structure_required` (no structure named) or a bad field, NotFound (structure
    unknown or invisible), Forbidden `action_not_allowed` (the actor may not
    manage its users), Conflict `login_email_taken` / `login_confusable`.
    """
    if structure_id is None:
        raise Invalid(
            "Logged in, name the structure you create the account for.",
            code="structure_required",
            errors={"structure_id": ["Required when logged in."]},
        )
    authorize(session, rt, actor, structure_id, MANAGE)
    user = accounts.create_account(session, rt, created_for_structure_id=structure_id, **fields)
    record(
        session,
        action="account.created",
        actor=actor,
        structure_id=structure_id,
        target_user_id=user.id,
        comment="Account created",
        after={"login_email": user.login_email, **_profile(user)},
    )
    commit(session, rt)
    return user


# --- CSV export -----------------------------------------------------------------


def neutralize(value: object) -> str:
    """A CSV cell that no spreadsheet runs as a formula: text starting with
    = + - @ tab or carriage return gets a leading single quote. None gives ""."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _csv_line(cells: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([neutralize(cell) for cell in cells])
    return buffer.getvalue()


def export_csv(session: Session, rt: Runtime, actor: User, user_ids: list[int]) -> Iterator[str]:
    """The selected users as CSV text, produced chunk by chunk (header first):
    one row per attachment the actor sees (not deleted, on structures where they
    manage users), the user's main fields repeated on each row.

    All or nothing: if any id is unknown or invisible, nothing is exported, so
    mixing ids teaches the caller nothing. The check is made before the first
    chunk; the rows are read EXPORT_CHUNK users at a time, each read in its own
    short transaction, so a slow reader holds no lock.

    Raises NotFound (some id unknown or invisible).
    """
    wanted = list(dict.fromkeys(user_ids))
    found = set(session.scalars(select(User.id).where(User.id.in_(wanted), _visible(rt, actor))))
    if len(found) != len(wanted):
        raise NotFound("No such user: every id must be a user you manage.")
    seen = _seen_attachments(rt, actor)
    log.info("user %s exports %d users as CSV", actor.id, len(wanted))
    session.commit()  # end the read: nothing is held while the response starts
    return _export_chunks(session, wanted, seen)


def _export_chunks(
    session: Session, user_ids: list[int], seen: ColumnElement[bool]
) -> Iterator[str]:
    yield _csv_line(EXPORT_COLUMNS)
    for start in range(0, len(user_ids), EXPORT_CHUNK):
        chunk = user_ids[start : start + EXPORT_CHUNK]
        rows = session.execute(
            select(User, Attachment, Structure, Service)
            .select_from(User)
            .join(Attachment, and_(Attachment.user_id == User.id, seen))
            .join(Structure, Structure.id == Attachment.structure_id)
            .outerjoin(Service, Service.id == Attachment.service_id)
            .where(User.id.in_(chunk))
            .order_by(
                Structure.designation_key,
                Structure.id,
                Attachment.service_id.is_not(None),
                Service.code,
                Attachment.id,
            )
        ).all()
        by_user: dict[int, list[str]] = defaultdict(list)
        for user, attachment, structure, service in rows:
            by_user[user.id].append(
                _csv_line(
                    (
                        user.id,
                        user.login_email,
                        user.contact_email,
                        user.last_name,
                        user.first_name,
                        user.phone,
                        user.status,
                        structure.designation,
                        structure.identifier_type,
                        structure.identifier_value,
                        service.code if service else None,
                        attachment.role,
                        attachment.status,
                        attachment.valid_from,
                        attachment.valid_until,
                    )
                )
            )
        session.commit()  # end this chunk's read before waiting on the client
        yield "".join(line for user_id in chunk for line in by_user[user_id])


def display_names(session: Session, user_ids: Iterable[int | None]) -> dict[int, str]:
    """The names ("First Last") of these users, for pages that list ids a workflow already
    let the caller see (requesters, history actors and targets)."""
    wanted = {i for i in user_ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(
        select(User.id, User.first_name, User.last_name).where(User.id.in_(wanted))
    )
    return {uid: f"{first} {last}".strip() for uid, first, last in rows}
