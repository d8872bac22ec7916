"""Fixture worlds: small named worlds of rights, written straight into the tables.

A *world* is a mapping (usually read from YAML, e.g. policies/tests/decisions.yaml)
that names every structure, service, user, attachment and subscription, so that
decision tests and security tooling can speak in names ("alice", "acme/sales")
instead of ids. Dates are day offsets relative to a reference day (today unless
told otherwise): -10 is ten days ago, +2 the day after tomorrow, null no date.

Shape of a world (fields with a default may be left out; unknown fields are
refused, so a typo never silently changes what a test proves)::

    structures:
      <name>:
        kind: public | private
        status: active | inactive              # default active
        identifier_type: AUTRE                  # default AUTRE; value defaults to the name
        opened: [<space code>, ...]             # spaces opened on the whole structure
        services:
          <code>: {active: true, opened: [<space code>, ...]}   # opened on this service
    users:
      <name>: {status: active, kind: person}    # status: pending | active | inactive | closed
    attachments:
      - {user: <name>, structure: <name>, service: <code> | null,   # null: whole structure
         role: principal | secondary | simple | technical,
         # status: pending | validated | deactivated | refused | deleted
         status: validated,
         valid_from: 0, valid_until: null}      # day offsets
    subscriptions:
      - {user: <name>, structure: <name>, service: <code> | null,   # null: all services
         space: <space code>, level: consult | modify, status: validated}

The loader writes rows with the models as they are: it does NOT apply the
workflows' checks (e.g. it will open a public-only space on a private structure),
so a world can hold the inconsistent data a defence-in-depth test needs. The
space catalogue must already be in the database (the service copies it at
start-up). A decision-matrix row is a mapping
``{user, structure, service?, space?, action, expect: allow | deny, why}``;
`question` turns it into an `authz.engine.decisions.Question`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from sqlalchemy.orm import Session

from models import Attachment, OpenedSpace, Service, Structure, Subscription, User

from .. import roles
from ..engine.decisions import Question
from ..workflows.records import bump_revision

K = TypeVar("K")
V = TypeVar("V")

WORLD_SECTIONS = frozenset({"structures", "users", "attachments", "subscriptions"})
STRUCTURE_FIELDS = frozenset(
    {"kind", "status", "identifier_type", "identifier_value", "designation", "opened", "services"}
)
SERVICE_FIELDS = frozenset({"active", "label", "opened"})
USER_FIELDS = frozenset({"status", "kind", "login_email"})
ATTACHMENT_FIELDS = frozenset(
    {"user", "structure", "service", "role", "status", "valid_from", "valid_until"}
)
SUBSCRIPTION_FIELDS = frozenset({"user", "structure", "service", "space", "level", "status"})
ROW_FIELDS = frozenset({"user", "structure", "service", "space", "action", "expect", "why"})
EXPECTATIONS = ("allow", "deny")


class WorldError(ValueError):
    """A world or a matrix row names something unknown or holds a bad value."""


@dataclass(frozen=True)
class WorldIds:
    """The ids a loaded world's names were given, and the policy revision the
    load was committed at (once the caller commits)."""

    users: dict[str, int]
    structures: dict[str, int]
    # (structure name, service code) -> service id
    services: dict[tuple[str, str], int]
    revision: int

    def user(self, name: str) -> int:
        return _lookup(self.users, name, "user")

    def structure(self, name: str) -> int:
        return _lookup(self.structures, name, "structure")

    def service(self, structure: str, code: str) -> int:
        return _lookup(self.services, (structure, code), "service")


@dataclass(frozen=True)
class DecisionMatrix:
    """A world and the decisions expected in it."""

    world: dict[str, Any]
    rows: list[dict[str, Any]]


def read_matrix(path: str | Path) -> DecisionMatrix:
    """Read a decision-matrix YAML file: `world:` (see the module docstring) and
    `rows:`. Raises WorldError on a malformed file or row."""
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or set(doc) != {"world", "rows"}:
        raise WorldError(f"{path}: expected exactly the keys `world` and `rows`")
    rows = list(doc["rows"] or [])
    for number, row in enumerate(rows, start=1):
        where = f"{path}: row {number}"
        _check_fields(row, ROW_FIELDS, where)
        missing = {"user", "structure", "action", "expect", "why"} - set(row)
        if missing:
            raise WorldError(f"{where}: missing {', '.join(sorted(missing))}")
        if row["expect"] not in EXPECTATIONS:
            raise WorldError(f"{where}: expect must be allow or deny, not {row['expect']!r}")
    return DecisionMatrix(world=dict(doc["world"] or {}), rows=rows)


def load_world(
    session: Session, world: Mapping[str, Any], *, today: dt.date | None = None
) -> WorldIds:
    """Write `world` into `session` with the models, then bump the policy
    revision once, naming every user, structure and (user, structure) pair it
    wrote. Does not commit. Raises WorldError on an unknown name or field."""
    today = today or roles.today()
    _check_fields(world, WORLD_SECTIONS, "world")
    structures: dict[str, Structure] = {}
    services: dict[tuple[str, str], Service] = {}
    for name, spec in (world.get("structures") or {}).items():
        _check_fields(spec, STRUCTURE_FIELDS, f"structure {name}")
        structure = Structure(
            identifier_type=spec.get("identifier_type", "AUTRE"),
            identifier_value=str(spec.get("identifier_value", name)),
            designation=spec.get("designation", name),
            kind=_required(spec, "kind", name),
            status=spec.get("status", "active"),
        )
        session.add(structure)
        session.flush()
        structures[name] = structure
        for code in spec.get("opened") or []:
            session.add(OpenedSpace(structure_id=structure.id, space_code=code))
        for code, svc in (spec.get("services") or {}).items():
            _check_fields(svc, SERVICE_FIELDS, f"service {name}/{code}")
            service = Service(
                structure_id=structure.id,
                code=code,
                label=svc.get("label", code),
                active=bool(svc.get("active", True)),
            )
            session.add(service)
            session.flush()
            services[(name, code)] = service
            for space in svc.get("opened") or []:
                session.add(
                    OpenedSpace(structure_id=structure.id, service_id=service.id, space_code=space)
                )
    users: dict[str, User] = {}
    for name, given in (world.get("users") or {}).items():
        spec = given or {}
        _check_fields(spec, USER_FIELDS, f"user {name}")
        user = User(
            login_email=spec.get("login_email", f"{name}@fixtures.invalid").lower(),
            contact_email=f"{name}@fixtures.invalid",
            first_name=name,
            last_name="Fixture",
            kind=spec.get("kind", "person"),
            status=spec.get("status", "active"),
        )
        session.add(user)
        users[name] = user
    session.flush()

    def scope(item: Mapping[str, Any], where: str) -> tuple[User, Structure, int | None]:
        user = _lookup(users, item.get("user"), f"{where}: user")
        structure = _lookup(structures, item.get("structure"), f"{where}: structure")
        code = item.get("service")
        service_id = (
            None
            if code is None
            else _lookup(services, (item["structure"], code), f"{where}: service").id
        )
        return user, structure, service_id

    memberships: set[tuple[int, int]] = set()
    for number, item in enumerate(world.get("attachments") or [], start=1):
        where = f"attachment {number}"
        _check_fields(item, ATTACHMENT_FIELDS, where)
        user, structure, service_id = scope(item, where)
        until = item.get("valid_until")
        session.add(
            Attachment(
                user_id=user.id,
                structure_id=structure.id,
                service_id=service_id,
                role=_required(item, "role", where),
                status=item.get("status", "validated"),
                valid_from=today + dt.timedelta(days=_offset(item.get("valid_from", 0), where)),
                valid_until=None
                if until is None
                else today + dt.timedelta(days=_offset(until, where)),
            )
        )
        memberships.add((user.id, structure.id))
    for number, item in enumerate(world.get("subscriptions") or [], start=1):
        where = f"subscription {number}"
        _check_fields(item, SUBSCRIPTION_FIELDS, where)
        user, structure, service_id = scope(item, where)
        session.add(
            Subscription(
                user_id=user.id,
                structure_id=structure.id,
                service_id=service_id,
                space_code=_required(item, "space", where),
                level=_required(item, "level", where),
                status=item.get("status", "validated"),
            )
        )
        memberships.add((user.id, structure.id))
    session.flush()
    revision = bump_revision(
        session,
        users=[u.id for u in users.values()],
        structures=[s.id for s in structures.values()],
        memberships=memberships,
    )
    return WorldIds(
        users={n: u.id for n, u in users.items()},
        structures={n: s.id for n, s in structures.items()},
        services={k: s.id for k, s in services.items()},
        revision=revision,
    )


def question(row: Mapping[str, Any], ids: WorldIds) -> Question:
    """The question a matrix row asks, with the ids of the loaded world. A row
    without `space` asks a management action on the structure."""
    service = row.get("service")
    if service is not None:
        ids.service(row["structure"], service)  # refuse a service the world lacks
    return Question(
        user_id=ids.user(row["user"]),
        structure_id=ids.structure(row["structure"]),
        space=row.get("space"),
        action=row["action"],
        service=service,
    )


def _lookup(table: Mapping[K, V], key: K | None, what: str) -> V:
    try:
        if key is None:
            raise KeyError(key)
        return table[key]
    except (KeyError, TypeError):
        raise WorldError(f"unknown {what} {key!r}") from None


def _check_fields(item: Any, allowed: frozenset[str], where: str) -> None:
    if not isinstance(item, Mapping):
        raise WorldError(f"{where}: expected a mapping, got {item!r}")
    unknown = set(item) - allowed
    if unknown:
        raise WorldError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")


def _required(item: Mapping[str, Any], key: str, where: str) -> Any:
    if item.get(key) is None:
        raise WorldError(f"{where}: `{key}` is required")
    return item[key]


def _offset(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WorldError(f"{where}: dates are whole day offsets from today, not {value!r}")
    return value
