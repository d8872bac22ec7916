"""Structures, their services and the spaces opened on them.

Every workflow owns its transaction; every change of rights bumps the policy
revision and writes a history entry in that same transaction.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from stdnum.fr import siret

from models import (
    IDENTIFIER_TYPES,
    Attachment,
    OpenedSpace,
    Service,
    Structure,
    StructureDefaultSpace,
    User,
)

from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..pagination import Page, paginate
from ..roles import today
from ..runtime import Runtime
from ..textkeys import fold
from . import accounts
from .access import authorize, visible_structures
from .records import bump_revision, commit, notify, record
from .service_refs import code_key, codes_of, resolve
from .withdrawal import withdraw

SETTING_FIELDS = ("invoice_requires_service", "legal_commitment_required")


def normalize_identifier(identifier_type: str, value: str) -> str:
    """Canonical identifier value; SIRET must be 14 digits with a valid checksum.

    Raises Invalid `invalid_identifier`.
    """
    if identifier_type not in IDENTIFIER_TYPES:
        raise Invalid(
            "Unknown identifier type.",
            code="invalid_identifier",
            errors={"identifier_type": [f"One of {', '.join(IDENTIFIER_TYPES)}."]},
        )
    value = (value or "").strip()
    if identifier_type == "SIRET":
        value = siret.compact(value)
        if not siret.is_valid(value):
            raise Invalid(
                "This SIRET is not valid (14 digits with a Luhn checksum).",
                code="invalid_identifier",
                errors={"identifier_value": ["Not a valid SIRET."]},
            )
    if not 1 <= len(value) <= 80:
        raise Invalid(
            "The identifier must have 1 to 80 characters.",
            code="invalid_identifier",
            errors={"identifier_value": ["Length must be 1 to 80."]},
        )
    return value


def snapshot(structure: Structure) -> dict[str, Any]:
    return {
        "identifier_type": structure.identifier_type,
        "identifier_value": structure.identifier_value,
        "designation": structure.designation,
        "kind": structure.kind,
        "status": structure.status,
        **{f: getattr(structure, f) for f in SETTING_FIELDS},
        "default_spaces": [d.space_code for d in structure.default_spaces],
    }


def _new_structure(
    session: Session,
    rt: Runtime,
    *,
    identifier_type: str,
    identifier_value: str,
    designation: str,
    kind: str,
    centrally_managed: bool = False,
    settings: dict[str, Any] | None = None,
) -> Structure:
    value = normalize_identifier(identifier_type, identifier_value)
    designation = (designation or "").strip()
    if not designation:
        raise Invalid("A designation is required.", errors={"designation": ["Required."]})
    if session.scalar(
        select(Structure.id).where(
            Structure.identifier_type == identifier_type, Structure.identifier_value == value
        )
    ):
        raise Conflict("A structure already has this identifier.", code="identifier_taken")
    structure = Structure(
        identifier_type=identifier_type,
        identifier_value=value,
        designation=designation,
        kind=kind,
        status="active",
        centrally_managed=centrally_managed,
    )
    settings = dict(settings or {})
    default_spaces = settings.pop("default_spaces", None) or []
    for name, val in settings.items():
        setattr(structure, name, bool(val))
    session.add(structure)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("A structure already has this identifier.", code="identifier_taken") from exc
    for entry in rt.policies.spaces:
        if entry.opened_by_default and (kind == "public" or not entry.public_only):
            structure.opened_spaces.append(OpenedSpace(space_code=entry.code))
    _set_default_spaces(rt, structure, default_spaces)
    return structure


def create_private(session: Session, rt: Runtime, actor: User, **fields: Any) -> Structure:
    """Any active person creates a private structure and becomes its principal.

    Raises Invalid, Conflict `identifier_taken`, Forbidden (technical users).
    """
    if actor.kind != "person" or actor.status != "active":
        raise Forbidden("Only an active person may create a structure.", code="action_not_allowed")
    structure = _new_structure(session, rt, kind="private", **fields)
    session.add(
        Attachment(
            user_id=actor.id,
            structure_id=structure.id,
            role="principal",
            status="validated",
            valid_from=today(),
            created_by_id=actor.id,
        )
    )
    record(
        session,
        action="structure.created",
        actor=actor,
        structure_id=structure.id,
        target_user_id=actor.id,
        after=snapshot(structure),
        comment="Structure created; creator is principal manager",
    )
    bump_revision(session, structures=[structure.id], memberships=[(actor.id, structure.id)])
    commit(session, rt)
    return structure


def register_public(
    session: Session,
    rt: Runtime,
    *,
    identifier_type: str,
    identifier_value: str,
    designation: str,
    centrally_managed: bool = False,
    principal_email: str | None = None,
    actor: User | None = None,
) -> Structure:
    """The operator registers a public structure, optionally naming its principal
    (an existing person, or a new pending account that gets an activation mail).

    Does not commit (the bulk import commits once for the whole file).
    """
    structure = _new_structure(
        session,
        rt,
        kind="public",
        identifier_type=identifier_type,
        identifier_value=identifier_value,
        designation=designation,
        centrally_managed=centrally_managed,
    )
    principal = None
    if principal_email:
        principal = accounts.find_by_login(session, principal_email)
        if principal is None:
            principal = accounts.create_account(
                session, rt, login_email=principal_email, last_name="-", first_name="-"
            )
        if principal.kind != "person" or principal.status == "closed":
            raise Invalid(
                "The principal must be a person with an open account.",
                errors={"principal_email": ["Not a usable account."]},
            )
        session.add(
            Attachment(
                user_id=principal.id,
                structure_id=structure.id,
                role="principal",
                status="validated",
                valid_from=today(),
                created_by_id=actor.id if actor else None,
            )
        )
    record(
        session,
        action="structure.registered",
        actor=actor,
        structure_id=structure.id,
        target_user_id=principal.id if principal else None,
        after=snapshot(structure),
        comment="Public structure registered by the operator",
    )
    bump_revision(
        session,
        structures=[structure.id],
        memberships=[(principal.id, structure.id)] if principal else [],
    )
    return structure


def register_public_by_operator(
    session: Session, rt: Runtime, actor: User, **fields: Any
) -> Structure:
    """The platform operator registers one public structure through the API.

    Raises Forbidden `operator_only`, Invalid, Conflict `identifier_taken`.
    """
    if actor.platform_role != "operator" or actor.status != "active":
        raise Forbidden(
            "Only the platform operator registers public structures.", code="operator_only"
        )
    structure = register_public(session, rt, actor=actor, **fields)
    commit(session, rt)
    return structure


@dataclass
class ImportReport:
    created: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


IMPORT_COLUMNS = ("identifier_type", "identifier_value", "designation")


def csv_data_rows(text: str) -> int:
    """Data rows of a CSV text (its header and blank lines are not rows), e.g. to
    size a progress bar before import_public_csv. Raises Invalid if the text is
    not CSV."""
    try:
        return max(sum(1 for row in csv.reader(io.StringIO(text)) if row) - 1, 0)
    except csv.Error as exc:
        raise Invalid(f"not a readable CSV file: {exc}") from exc


def import_public_csv(
    session: Session, rt: Runtime, text: str, progress: Callable[[int], None] | None = None
) -> ImportReport:
    """Register public structures from CSV (columns: identifier_type,
    identifier_value, designation, and optional centrally_managed, principal_email).

    All or nothing: any invalid row means nothing is imported and every error is
    reported. Rows whose identifier already exists are skipped (re-runs are safe).
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = set(IMPORT_COLUMNS) - set(reader.fieldnames or [])
    if missing:
        return ImportReport(errors=[f"missing columns: {', '.join(sorted(missing))}"])
    report = ImportReport()
    seen: set[tuple[str, str]] = set()
    for line, row in enumerate(reader, start=2):
        try:
            key = (
                row["identifier_type"].strip(),
                normalize_identifier(row["identifier_type"].strip(), row["identifier_value"]),
            )
            if key in seen:
                raise Invalid("identifier repeated in the file")
            seen.add(key)
            if session.scalar(
                select(Structure.id).where(
                    Structure.identifier_type == key[0], Structure.identifier_value == key[1]
                )
            ):
                report.skipped += 1
            else:
                with session.begin_nested():
                    register_public(
                        session,
                        rt,
                        identifier_type=key[0],
                        identifier_value=key[1],
                        designation=row["designation"],
                        centrally_managed=(row.get("centrally_managed") or "").strip().lower()
                        in ("1", "true", "yes", "oui"),
                        principal_email=(row.get("principal_email") or "").strip() or None,
                    )
                report.created += 1
        except (Invalid, Conflict) as exc:
            report.errors.append(f"line {line}: {exc.detail}")
        if progress:
            progress(1)
    if report.errors:
        session.rollback()
        report.created = 0
    else:
        commit(session, rt)
    return report


def list_visible(
    session: Session,
    rt: Runtime,
    actor: User,
    *,
    q: str | None = None,
    identifier_value: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    page: int,
    page_size: int,
) -> Page:
    """The structures the actor may see, filtered and paginated."""
    stmt = select(Structure).where(visible_structures(rt, actor))
    if q:
        # A literal substring: %, _ and the escape character match themselves.
        # The designation is compared folded (case and accents ignored:
        # "etablissement" finds "Établissement…", authz/textkeys.py).
        term = q.strip().lower()
        stmt = stmt.where(
            or_(
                Structure.designation_key.contains(fold(q), autoescape=True),
                func.lower(Structure.designation).contains(term, autoescape=True),
                Structure.identifier_value.contains(term, autoescape=True),
                Structure.identifier_value.contains(q.strip(), autoescape=True),
            )
        )
    if identifier_value:
        stmt = stmt.where(Structure.identifier_value == identifier_value.strip())
    if status:
        stmt = stmt.where(Structure.status == status)
    if kind:
        stmt = stmt.where(Structure.kind == kind)
    return paginate(session, stmt.order_by(Structure.id), page=page, page_size=page_size)


def designations(session: Session, structure_ids: Iterable[int]) -> dict[int, str]:
    """The designation of each structure by id: for naming, to a person, the
    structures of their own requests (which they looked up to ask)."""
    ids = set(structure_ids)
    if not ids:
        return {}
    rows = session.execute(select(Structure.id, Structure.designation).where(Structure.id.in_(ids)))
    return dict(rows.all())


def lookup(
    session: Session, actor: User, *, identifier_type: str, identifier_value: str
) -> Structure:
    """An ACTIVE structure by its exact identifier, for a person who wants to ask
    for an attachment (exact match only: no browsing of the directory).

    Raises NotFound, Invalid `invalid_identifier`.
    """
    value = normalize_identifier(identifier_type, identifier_value)
    structure = session.scalar(
        select(Structure).where(
            Structure.identifier_type == identifier_type,
            Structure.identifier_value == value,
            Structure.status == "active",
        )
    )
    if structure is None or actor.status != "active":
        raise NotFound("No active structure has this identifier.")
    return structure


def get(session: Session, rt: Runtime, actor: User, structure_id: int) -> Structure:
    return authorize(session, rt, actor, structure_id, "structure.view")


def _set_default_spaces(rt: Runtime, structure: Structure, codes: Iterable[str]) -> None:
    codes = list(dict.fromkeys(codes))
    opened = {o.space_code for o in structure.opened_spaces}
    for code in codes:
        _check_space_allowed(rt, structure, code, field_name="default_spaces")
        if code not in opened:  # a request for it would be refused: say so now
            raise Invalid(
                f"The space {code!r} is not opened on this structure; open it first.",
                code="space_not_opened",
                errors={"default_spaces": [f"{code!r} is not opened here."]},
            )
    structure.default_spaces = [StructureDefaultSpace(space_code=c) for c in codes]


def _check_space_allowed(rt: Runtime, structure: Structure, code: str, *, field_name: str) -> None:
    entry = rt.policies.space(code)
    if entry is None:
        raise Invalid(
            f"Unknown space {code!r}.",
            code="unknown_space",
            errors={field_name: [f"Unknown space {code!r}."]},
        )
    if entry.public_only and structure.kind != "public":
        raise Invalid(
            f"The space {code!r} exists only on public structures.",
            code="public_only_space",
            errors={field_name: [f"{code!r} is for public structures only."]},
        )


def update(
    session: Session, rt: Runtime, actor: User, structure_id: int, changes: dict[str, Any]
) -> Structure:
    """A manager changes the designation or the settings of their structure."""
    structure = authorize(session, rt, actor, structure_id, "structure.update")
    before = snapshot(structure)
    if "designation" in changes:
        designation = (changes.pop("designation") or "").strip()
        if not designation:
            raise Invalid("A designation is required.", errors={"designation": ["Required."]})
        structure.designation = designation
    if "default_spaces" in changes:
        _set_default_spaces(rt, structure, changes.pop("default_spaces"))
    for name in SETTING_FIELDS:
        if name in changes:
            setattr(structure, name, bool(changes.pop(name)))
    if changes:
        raise Invalid(
            "These fields cannot be changed.",
            errors={f: ["Cannot be changed."] for f in sorted(changes)},
        )
    session.flush()
    record(
        session,
        action="structure.updated",
        actor=actor,
        structure_id=structure.id,
        before=before,
        after=snapshot(structure),
    )
    commit(session, rt)
    return structure


def list_services(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    *,
    active: bool | None,
    page: int,
    page_size: int,
) -> Page:
    authorize(session, rt, actor, structure_id, "structure.view")
    stmt = select(Service).where(Service.structure_id == structure_id)
    if active is not None:
        stmt = stmt.where(Service.active.is_(active))
    return paginate(session, stmt.order_by(Service.code), page=page, page_size=page_size)


def create_service(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    *,
    code: str,
    label: str,
    active: bool = True,
) -> Service:
    """Raises Conflict `service_code_taken` when the code exists in the
    structure, whatever its case (`livraison` when `LIVRAISON` exists)."""
    authorize(session, rt, actor, structure_id, "services.manage")
    code, label = (code or "").strip(), (label or "").strip()
    if not code or not label:
        raise Invalid(
            "A code and a label are required.",
            errors={k: ["Required."] for k, v in (("code", code), ("label", label)) if not v},
        )
    taken = codes_of(session, structure_id).get(code_key(code))
    if taken is not None:
        existing = session.get_one(Service, taken).code
        raise Conflict(
            f"This structure already has the service {existing}: service codes are "
            f"compared without case, so {code} would name the same service.",
            code="service_code_taken",
        )
    service = Service(structure_id=structure_id, code=code, label=label, active=active)
    session.add(service)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(
            "This structure already has a service with this code.", code="service_code_taken"
        ) from exc
    record(
        session,
        action="service.created",
        actor=actor,
        structure_id=structure_id,
        after={"service_id": service.id, "code": code, "label": label, "active": active},
    )
    bump_revision(session, structures=[structure_id])
    commit(session, rt)
    return service


def update_service(
    session: Session,
    rt: Runtime,
    actor: User,
    structure_id: int,
    service_id: int,
    changes: dict[str, Any],
) -> Service:
    """Rename, activate or deactivate a service (an inactive service grants nothing)."""
    authorize(session, rt, actor, structure_id, "services.manage")
    service = session.get(Service, service_id)
    if service is None or service.structure_id != structure_id:
        raise NotFound("No such service in this structure.")
    before = {"label": service.label, "active": service.active}
    if "label" in changes:
        label = (changes["label"] or "").strip()
        if not label:
            raise Invalid("A label is required.", errors={"label": ["Required."]})
        service.label = label
    if "active" in changes:
        service.active = bool(changes["active"])
    after: dict[str, Any] = {"label": service.label, "active": service.active}
    deactivated: list[User] = []
    if before["active"] and not service.active:
        # The guide's "Désactivé": the attachments to the service are withdrawn
        # with their subscriptions there, and do not come back with the service.
        for user_id in session.scalars(
            select(Attachment.user_id).where(
                Attachment.service_id == service.id, Attachment.status == "validated"
            )
        ).all():
            withdraw(session, user_id, structure_id, [service.id])
            deactivated.append(session.get_one(User, user_id))
        after["deactivated_attachments"] = [u.id for u in deactivated]
    record(
        session,
        action="service.updated",
        actor=actor,
        structure_id=structure_id,
        comment="Deactivated" if deactivated else None,
        before={"service_id": service.id, **before},
        after={"service_id": service.id, **after},
    )
    if before["active"] != after["active"]:
        bump_revision(session, structures=[structure_id])
    structure = session.get_one(Structure, structure_id)
    for user in deactivated:
        notify(
            session,
            user,
            f"Service {service.code} of {structure.designation} deactivated",
            f"The service {service.code} ({service.label}) of {structure.designation} was "
            "deactivated: your attachment to it and your subscriptions there ended.",
        )
    commit(session, rt)
    return service


def opened_spaces(
    session: Session, rt: Runtime, actor: User, structure_id: int
) -> list[OpenedSpace]:
    structure = authorize(session, rt, actor, structure_id, "structure.view")
    return list(structure.opened_spaces)


def replace_opened_spaces(
    session: Session, rt: Runtime, actor: User, structure_id: int, entries: list[dict[str, Any]]
) -> list[OpenedSpace]:
    """Set exactly which spaces are opened on the structure (service_id None) and
    on which of its services. Public-only spaces are refused on private structures.
    """
    structure = authorize(session, rt, actor, structure_id, "spaces.manage")
    wanted: set[tuple[str, int | None]] = set()
    service_ids = set(
        session.scalars(select(Service.id).where(Service.structure_id == structure_id))
    )
    for entry in entries:
        code = entry["space_code"]
        # A service by id or by its code in this structure (service_refs.py).
        service_id = resolve(session, structure_id, entry.get("service_id"))
        _check_space_allowed(rt, structure, code, field_name="spaces")
        if service_id is not None and service_id not in service_ids:
            raise Invalid(
                f"Service {service_id} is not a service of this structure.",
                code="unknown_service",
                errors={"spaces": [f"Unknown service {service_id}."]},
            )
        wanted.add((code, service_id))
    current = {(o.space_code, o.service_id): o for o in structure.opened_spaces}
    before = sorted(current, key=_space_key)
    for key, row in current.items():
        if key not in wanted:
            structure.opened_spaces.remove(row)
    for code, service_id in sorted(wanted - set(current), key=_space_key):
        structure.opened_spaces.append(OpenedSpace(space_code=code, service_id=service_id))
    # A default space closed everywhere leaves the defaults with it: a request
    # for it would be refused (space_not_opened), and it could not be named
    # as a default now either (docs/manager-guide.md, §2).
    still_open = {code for code, _ in wanted}
    dropped = sorted(
        d.space_code for d in structure.default_spaces if d.space_code not in still_open
    )
    for default in [d for d in structure.default_spaces if d.space_code in dropped]:
        structure.default_spaces.remove(default)
    if set(current) != wanted:
        session.flush()
        record(
            session,
            action="spaces.updated",
            actor=actor,
            structure_id=structure_id,
            before={"spaces": [list(k) for k in before]},
            after={
                "spaces": [list(k) for k in sorted(wanted, key=_space_key)],
                **({"default_spaces_removed": dropped} if dropped else {}),
            },
        )
        bump_revision(session, structures=[structure_id])
    commit(session, rt)
    return list(structure.opened_spaces)


def _space_key(key: tuple[str, int | None]) -> tuple[str, int]:
    return (key[0], key[1] or 0)
