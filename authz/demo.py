"""The demo world loaded by `authz demo`: two structures and the people around
them, in every state a manager meets (validated, pending, service-scoped…).

This module is the demo's data builder: it writes rows with the models directly,
in ONE transaction, so the demo is either fully loaded or not at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, TypedDict

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import (
    Attachment,
    AttachmentRequest,
    OpenedSpace,
    Service,
    Structure,
    Subscription,
    SubscriptionRequest,
    SubscriptionRequestLine,
    TechnicalCredential,
    User,
    utcnow,
)

from .errors import Conflict
from .roles import today
from .runtime import Runtime
from .security import new_token
from .workflows import accounts, structures
from .workflows.records import bump_revision, commit, record

DEMO_PASSWORD = "demo-password-2026"  # noqa: S105 - the demo's, printed by `authz demo`


class Identity(TypedDict):
    """What the demo's structures are registered with."""

    identifier_type: str
    identifier_value: str
    designation: str


BAKERY: Identity = {
    "identifier_type": "SIRET",
    "identifier_value": "73282932000074",
    "designation": "Boulangerie Martin SARL",
}
BAKERY_SERVICES = (("ATELIER", "Atelier"), ("BOUTIQUE", "Boutique"))
TOWN_HALL: Identity = {
    "identifier_type": "SIRET",
    "identifier_value": "35600000000048",
    "designation": "Mairie de Sainte-Exemple",
}
TOWN_HALL_SERVICES = (("FIN", "Direction des finances"), ("TECH", "Services techniques"))

# (login email, first name, last name) of the demo people.
CLAIRE = ("claire.martin@boulangerie-martin.example", "Claire", "Martin")
PAUL = ("paul.bernard@boulangerie-martin.example", "Paul", "Bernard")
LUCIE = ("lucie.petit@boulangerie-martin.example", "Lucie", "Petit")
JULIEN = ("julien.moreau@courriel.example", "Julien", "Moreau")
NINA = ("nina.roux@courriel.example", "Nina", "Roux")
SOPHIE = ("sophie.durand@sainte-exemple.example", "Sophie", "Durand")
THOMAS = ("thomas.garnier@sainte-exemple.example", "Thomas", "Garnier")
CASH_REGISTER = (
    "caisse@api.boulangerie-martin.example",
    "Logiciel de caisse",
    "Boulangerie Martin",
)
# Its presence means the demo is loaded.
FIRST_EMAIL = CLAIRE[0]


@dataclass(frozen=True)
class DemoLogin:
    email: str
    # None: this account cannot log in with a password (pending or technical).
    password: str | None
    role: str


@dataclass(frozen=True)
class DemoStructure:
    designation: str
    identifier: str
    kind: str
    services: tuple[str, ...]


@dataclass
class DemoReport:
    # False: the demo was already there and nothing was written.
    loaded: bool
    logins: list[DemoLogin] = field(default_factory=list)
    structures: list[DemoStructure] = field(default_factory=list)


def _report(loaded: bool) -> DemoReport:
    bakery, town = BAKERY["designation"], TOWN_HALL["designation"]
    logins = [
        DemoLogin(CLAIRE[0], DEMO_PASSWORD, f"principal manager, {bakery}"),
        DemoLogin(PAUL[0], DEMO_PASSWORD, f"secondary manager, {bakery}"),
        DemoLogin(LUCIE[0], DEMO_PASSWORD, f"simple user (pending subscription request), {bakery}"),
        DemoLogin(JULIEN[0], DEMO_PASSWORD, f"pending attachment request, {bakery}"),
        DemoLogin(SOPHIE[0], DEMO_PASSWORD, f"principal manager, {town}"),
        DemoLogin(THOMAS[0], DEMO_PASSWORD, f"simple user of service FIN, {town}"),
        DemoLogin(NINA[0], None, "pending account (activation mail in the outbox)"),
        DemoLogin(CASH_REGISTER[0], None, f"technical user, {bakery}"),
    ]
    structures_ = [
        DemoStructure(
            bakery,
            f"SIRET {BAKERY['identifier_value']}",
            "private",
            tuple(code for code, _ in BAKERY_SERVICES),
        ),
        DemoStructure(
            town,
            f"SIRET {TOWN_HALL['identifier_value']}",
            "public",
            tuple(code for code, _ in TOWN_HALL_SERVICES),
        ),
    ]
    return DemoReport(loaded=loaded, logins=logins, structures=structures_)


class _Builder:
    """Writes the demo rows and the history entries of what each manager did."""

    def __init__(self, session: Session, rt: Runtime) -> None:
        self.session, self.rt, self.today = session, rt, today()

    def person(self, who: tuple[str, str, str]) -> User:
        email, first, last = who
        user = User(
            login_email=email,
            contact_email=email,
            first_name=first,
            last_name=last,
            kind="person",
            status="active",
            activated_at=utcnow(),
            password_hash=self.rt.hasher.hash(DEMO_PASSWORD),
        )
        self.session.add(user)
        self.session.flush()
        return user

    def services(
        self, structure: Structure, actor: User, entries: tuple[tuple[str, str], ...]
    ) -> dict[str, Service]:
        made = {}
        for code, label in entries:
            service = Service(structure_id=structure.id, code=code, label=label, active=True)
            self.session.add(service)
            self.session.flush()
            self.history(
                "service.created",
                actor,
                structure,
                after={"service_id": service.id, "code": code, "label": label, "active": True},
            )
            made[code] = service
        return made

    def attach(
        self,
        user: User,
        structure: Structure,
        role: str,
        by: User,
        service: Service | None = None,
        action: str = "attachment.created",
    ) -> None:
        self.session.add(
            Attachment(
                user_id=user.id,
                structure_id=structure.id,
                service_id=service.id if service else None,
                role=role,
                status="validated",
                valid_from=self.today,
                created_by_id=by.id,
            )
        )
        self.history(
            action,
            by,
            structure,
            target=user,
            comment="Validated",
            after={"role": role, "service": service.code if service else None},
        )

    def subscribe(
        self, user: User, structure: Structure, by: User, *grants: tuple[str, str, Service | None]
    ) -> None:
        for space_code, level, service in grants:
            self.session.add(
                Subscription(
                    user_id=user.id,
                    structure_id=structure.id,
                    service_id=service.id if service else None,
                    space_code=space_code,
                    level=level,
                    status="validated",
                    granted_by_id=by.id,
                )
            )
        self.history(
            "subscriptions.granted",
            by,
            structure,
            target=user,
            comment="Validated",
            after={
                "subscriptions": [
                    {"space": code, "level": level, "service": service.code if service else None}
                    for code, level, service in grants
                ]
            },
        )

    def history(
        self,
        action: str,
        actor: User,
        structure: Structure,
        *,
        target: User | None = None,
        comment: str | None = None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> None:
        record(
            self.session,
            action=action,
            actor=actor,
            structure_id=structure.id,
            target_user_id=target.id if target else None,
            comment=comment,
            before=before,
            after=after,
        )


def load_demo(session: Session, rt: Runtime) -> DemoReport:
    """Load the demo world unless its first user exists (then write nothing and
    report loaded=False). Every demo person is active with the password
    DEMO_PASSWORD, except one pending account that gets the normal activation
    mail. Commits once.

    Raises Conflict `demo_loading` if another process loaded the demo meanwhile.
    """
    if accounts.find_by_login(session, FIRST_EMAIL) is not None:
        return _report(loaded=False)
    try:
        _build_world(session, rt)
        bump_revision(session)  # a whole new world: every worker reloads its index
        commit(session, rt)
    except IntegrityError as exc:  # a concurrent `authz demo` wrote the same rows first
        session.rollback()
        raise Conflict(
            "The demo was being loaded by another process; run it again.", code="demo_loading"
        ) from exc
    return _report(loaded=True)


def _build_world(session: Session, rt: Runtime) -> None:
    """Write every demo row and history entry, without committing."""
    b = _Builder(session, rt)
    claire, paul, lucie, julien = (b.person(p) for p in (CLAIRE, PAUL, LUCIE, JULIEN))
    sophie, thomas = b.person(SOPHIE), b.person(THOMAS)

    # The bakery: a private structure created by Claire, who is its principal.
    bakery = Structure(kind="private", status="active", **BAKERY)
    session.add(bakery)
    session.flush()
    for entry in rt.policies.spaces:
        if entry.opened_by_default and not entry.public_only:
            bakery.opened_spaces.append(OpenedSpace(space_code=entry.code))
    session.add(
        Attachment(
            user_id=claire.id,
            structure_id=bakery.id,
            role="principal",
            status="validated",
            valid_from=b.today,
            created_by_id=claire.id,
        )
    )
    b.history(
        "structure.created",
        claire,
        bakery,
        target=claire,
        comment="Structure created; creator is principal manager",
        after=structures.snapshot(bakery),
    )
    bakery_services = b.services(bakery, claire, BAKERY_SERVICES)
    workshop = bakery_services["ATELIER"]
    opened_before = [[o.space_code, None] for o in bakery.opened_spaces]
    bakery.opened_spaces.append(OpenedSpace(space_code="works_invoices", service_id=workshop.id))
    b.history(
        "spaces.updated",
        claire,
        bakery,
        before={"spaces": opened_before},
        after={"spaces": [*opened_before, ["works_invoices", workshop.id]]},
    )
    b.attach(paul, bakery, "secondary", by=claire)
    b.attach(lucie, bakery, "simple", by=paul)
    b.subscribe(
        claire,
        bakery,
        claire,
        ("issued_invoices", "modify", None),
        ("works_invoices", "modify", workshop),
    )
    b.subscribe(paul, bakery, claire, ("issued_invoices", "modify", None))
    b.subscribe(
        lucie,
        bakery,
        paul,
        ("issued_invoices", "modify", None),
        ("works_invoices", "consult", workshop),
    )

    email, first, last = CASH_REGISTER
    register = User(
        login_email=email,
        contact_email=CLAIRE[0],
        first_name=first,
        last_name=last,
        kind="technical",
        status="active",
        activated_at=utcnow(),
    )
    session.add(register)
    session.flush()
    # A random secret nobody knows: the principal resets it to connect the register.
    session.add(
        TechnicalCredential(
            user_id=register.id,
            structure_id=bakery.id,
            label=first,
            created_by_id=claire.id,
            secret_hash=rt.hasher.hash(new_token()),
            secret_expires_at=utcnow() + dt.timedelta(days=rt.settings.technical_secret_ttl_days),
        )
    )
    b.attach(register, bakery, "technical", by=claire, action="technical_user.created")
    b.subscribe(register, bakery, claire, ("issued_invoices", "modify", None))

    # Julien asks to join the bakery (his link to it is pending until a manager
    # decides); Lucie asks for more spaces.
    session.add(
        AttachmentRequest(
            user_id=julien.id,
            structure_id=bakery.id,
            whole_structure=True,
            status="pending",
            comment="Vendeur à la boutique depuis le 1er mars.",
        )
    )
    session.add(
        Attachment(
            user_id=julien.id,
            structure_id=bakery.id,
            role="simple",
            status="pending",
            valid_from=b.today,
            created_by_id=julien.id,
        )
    )
    session.add(
        SubscriptionRequest(
            user_id=lucie.id,
            structure_id=bakery.id,
            origin="manual",
            status="pending",
            comment="Pour suivre les sollicitations et les factures de l'atelier.",
            lines=[
                SubscriptionRequestLine(space_code="issued_solicitations", level="consult"),
                SubscriptionRequestLine(
                    space_code="works_invoices", level="modify", service_id=workshop.id
                ),
            ],
        )
    )
    nina = accounts.create_account(
        session, rt, login_email=NINA[0], first_name=NINA[1], last_name=NINA[2]
    )
    b.history(
        "account.created",
        claire,
        bakery,
        target=nina,
        comment="Account created; activation mail sent",
    )

    # The town hall: a public structure registered by the operator, Sophie principal.
    town = structures.register_public(session, rt, principal_email=SOPHIE[0], **TOWN_HALL)
    finance = b.services(town, sophie, TOWN_HALL_SERVICES)["FIN"]
    b.attach(thomas, town, "simple", by=sophie, service=finance)
    b.subscribe(
        sophie,
        town,
        sophie,
        ("received_invoices", "modify", None),
        ("issued_invoices", "modify", None),
    )
    b.subscribe(thomas, town, sophie, ("received_invoices", "consult", finance))
