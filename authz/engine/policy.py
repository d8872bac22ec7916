"""The policy files (policies/) loaded and checked, and the management engine.

The files decide; this module only reads them, refuses inconsistent ones at
start-up, and wraps pycasbin so that any error in the engine is a deny.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import casbin
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import LEVELS, ROLES, Space

log = logging.getLogger("authz.policy")

NO_ROLE = "none"
STATES = ("active", "inactive")


class PolicyFileError(Exception):
    """A policy file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class SpaceEntry:
    code: str
    label: str
    public_only: bool
    opened_by_default: bool
    granted_by_default: dict[str, str]


@dataclass(frozen=True)
class Policies:
    directory: Path
    spaces: tuple[SpaceEntry, ...]
    actions: dict[str, dict]
    roles: dict[str, dict]

    def space(self, code: str) -> SpaceEntry | None:
        return next((s for s in self.spaces if s.code == code), None)

    @property
    def manager_roles(self) -> frozenset[str]:
        return frozenset(r for r, spec in self.roles.items() if spec.get("manages"))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyFileError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyFileError(f"{path}: expected a mapping at the top level")
    return data


def load_policies(directory: str | Path) -> Policies:
    directory = Path(directory)
    spaces_doc = _read_yaml(directory / "spaces.yaml")
    roles_doc = _read_yaml(directory / "roles.yaml")
    spaces: list[SpaceEntry] = []
    for item in spaces_doc.get("spaces") or []:
        try:
            entry = SpaceEntry(
                code=str(item["code"]),
                label=str(item["label"]),
                public_only=bool(item.get("public_only", False)),
                opened_by_default=bool(item.get("opened_by_default", False)),
                granted_by_default=dict(item.get("granted_by_default") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise PolicyFileError(f"spaces.yaml: bad entry {item!r}") from exc
        for role, level in entry.granted_by_default.items():
            if role not in ROLES or level not in LEVELS:
                raise PolicyFileError(
                    f"spaces.yaml: {entry.code}: unknown role or level {role}: {level}"
                )
        spaces.append(entry)
    codes = [s.code for s in spaces]
    if not codes or len(set(codes)) != len(codes):
        raise PolicyFileError("spaces.yaml: no spaces, or a code appears twice")
    actions = dict(roles_doc.get("actions") or {})
    roles = dict(roles_doc.get("roles") or {})
    if set(roles) != set(ROLES):
        raise PolicyFileError(f"roles.yaml: roles must be exactly {', '.join(ROLES)}")
    for role, spec in roles.items():
        unknown = set(spec.get("actions") or []) - set(actions)
        if unknown:
            raise PolicyFileError(f"roles.yaml: {role}: unknown actions {sorted(unknown)}")
    return Policies(directory=directory, spaces=tuple(spaces), actions=actions, roles=roles)


def management_rules(policies: Policies) -> list[list[str]]:
    """The Casbin `p` rows generated from roles.yaml (see policies/model.conf)."""
    rows = []
    for role, spec in sorted(policies.roles.items()):
        for action in spec.get("actions") or []:
            rows.append([role, action, "active"])
            if policies.actions[action].get("on_inactive_structure"):
                rows.append([role, action, "inactive"])
    return rows


LEVEL_NONE = "none"
SPACE_ACTIONS = ("consult", "modify", "create")


@dataclass(frozen=True, slots=True)
class SubjectFacts:
    """`r2.sub` of policies/model.conf: the user on the structure, for one scope."""

    user_status: str
    whole: bool
    service: bool
    all_level: str
    service_level: str
    role_level: str


@dataclass(frozen=True, slots=True)
class SpaceFacts:
    """`r2.obj` of policies/model.conf: the space on the structure, for one scope."""

    structure_status: str
    structure_kind: str
    public_only: bool
    opened_structure: bool
    opened_service: bool
    service_status: str


class PolicyEngine:
    """pycasbin loaded with policies/model.conf, levels.csv and the rows generated
    from roles.yaml. The only place decisions are taken; any error denies."""

    def __init__(self, policies: Policies) -> None:
        self.policies = policies
        self._enforcer = casbin.Enforcer(
            str(policies.directory / "model.conf"), str(policies.directory / "levels.csv")
        )
        self._enforcer.enable_auto_save(False)  # rows live in memory only
        self._enforcer.add_policies(management_rules(policies))
        self._spaces = self._enforcer.new_enforce_context("2")

    def allows(self, role: str | None, action: str, structure_status: str) -> bool:
        """Management: may `role` perform `action` on a structure in this status?"""
        if action not in self.policies.actions:
            raise ValueError(f"unknown management action {action!r}")
        try:
            return bool(self._enforcer.enforce(role or NO_ROLE, action, structure_status))
        except Exception:  # any engine failure is a deny, and is logged
            log.exception("management engine error: deny")
            return False

    def space(self, sub: SubjectFacts, obj: SpaceFacts, action: str) -> tuple[bool, list[str]]:
        """Spaces: the decision and the `p2` row that allowed it ([] when denied)."""
        try:
            allowed, row = self._enforcer.enforce_ex(self._spaces, sub, obj, action)
            return bool(allowed), list(row or [])
        except Exception:  # any engine failure is a deny, and is logged
            log.exception("space engine error: deny")
            return False, []

    def level_rows(self) -> list[list[str]]:
        return [list(r) for r in self._enforcer.get_named_policy("p2")]


def sync_space_catalogue(session: Session, policies: Policies) -> None:
    """Make the `spaces` table mirror spaces.yaml (insert and update; never delete,
    since rights may still reference a space removed from the file)."""
    existing = {s.code: s for s in session.scalars(select(Space))}
    for position, entry in enumerate(policies.spaces):
        row = existing.get(entry.code) or Space(code=entry.code)
        row.label = entry.label
        row.public_only = entry.public_only
        row.opened_by_default = entry.opened_by_default
        row.position = position
        session.add(row)
