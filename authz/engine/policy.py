"""The policy files (policies/) loaded and checked, and the management engine.

The files decide; this module only reads them, refuses inconsistent ones at
start-up, and wraps pycasbin so that any error in the engine is a deny.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import casbin
import yaml
from casbin.persist.adapter import Adapter, load_policy_line
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import LEVELS, ROLES, Space

log = logging.getLogger("authz.policy")

NO_ROLE = "none"
STATES = ("active", "inactive")


class PolicyFileError(Exception):
    """A policy file is missing, malformed or inconsistent."""


# The files of a policy set: the engine's, then the assertion tests
# (tests/*.yaml, which `authz policy test` runs and `authz policy apply` requires).
ENGINE_FILES = ("model.conf", "levels.csv", "roles.yaml", "spaces.yaml")
TESTS_GLOB = "tests/*.yaml"


def read_policy_files(directory: str | Path) -> dict[str, str]:
    """The texts of a policy folder's files by name (`tests/x.yaml` for the
    assertion files): what a policy version stores. Raises PolicyFileError when
    an engine file is missing or unreadable."""
    directory = Path(directory)
    files = {}
    for name in ENGINE_FILES:
        try:
            files[name] = (directory / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyFileError(f"{directory / name}: {exc}") from exc
    for path in sorted(directory.glob(TESTS_GLOB)):
        files[path.relative_to(directory).as_posix()] = path.read_text(encoding="utf-8")
    return files


def digest(files: Mapping[str, str]) -> str:
    """sha256 (hex) of a policy set: every file's name and text, in name order."""
    h = hashlib.sha256()
    for name in sorted(files):
        for part in (name, files[name]):
            data = part.encode("utf-8")
            h.update(len(data).to_bytes(8, "big"))
            h.update(data)
    return h.hexdigest()


def write_policy_files(files: Mapping[str, str], directory: str | Path) -> Path:
    """Write a stored policy set into `directory` (e.g. to run its assertion
    tests, or to read it). Refuses names that would leave the folder."""
    directory = Path(directory)
    for name, text in files.items():
        target = directory / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise PolicyFileError(f"policy file name {name!r} leaves its folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return directory


@dataclass(frozen=True)
class SpaceEntry:
    code: str
    label: str
    public_only: bool
    opened_by_default: bool
    granted_by_default: dict[str, str]


@dataclass(frozen=True)
class Policies:
    # Where the files were read from (a folder), or "policy version N".
    origin: str
    spaces: tuple[SpaceEntry, ...]
    actions: dict[str, dict]
    roles: dict[str, dict]
    # Their texts by name (read_policy_files), and the stored version they are
    # (None: read from a folder, not from the database).
    files: Mapping[str, str] = field(default_factory=dict, repr=False)
    version: int | None = None

    @property
    def digest(self) -> str:
        return digest(self.files)

    def space(self, code: str) -> SpaceEntry | None:
        return next((s for s in self.spaces if s.code == code), None)

    @property
    def manager_roles(self) -> frozenset[str]:
        return frozenset(r for r, spec in self.roles.items() if spec.get("manages"))


def _read_yaml(files: Mapping[str, str], name: str, origin: str) -> dict:
    try:
        data = yaml.safe_load(files[name])
    except (KeyError, yaml.YAMLError) as exc:
        raise PolicyFileError(f"{origin}/{name}: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyFileError(f"{origin}/{name}: expected a mapping at the top level")
    return data


def load_policies(directory: str | Path) -> Policies:
    """The policy files of a folder, read and checked. Raises PolicyFileError."""
    return parse_policies(read_policy_files(directory), origin=str(directory))


def parse_policies(
    files: Mapping[str, str], *, origin: str, version: int | None = None
) -> Policies:
    """A policy set from its files' texts (a folder's, or a stored version's),
    checked. Raises PolicyFileError."""
    spaces_doc = _read_yaml(files, "spaces.yaml", origin)
    roles_doc = _read_yaml(files, "roles.yaml", origin)
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
    return Policies(
        origin=origin,
        spaces=tuple(spaces),
        actions=actions,
        roles=roles,
        files=dict(files),
        version=version,
    )


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


class _Enforcer(casbin.Enforcer):
    """casbin.Enforcer with each matcher parsed once per thread.

    pycasbin 2.8 parses the matcher text into an expression on every
    enforce() (CoreEnforcer._get_expression, called by enforce_ex): about
    two thirds of a denial's 0.6 ms here. Casbin's Go, Java and Node
    editions keep parsed matchers; this does the same for our model. The
    expression is pycasbin's own (the same parse, evaluated by enforce_ex
    as before), only kept. A kept expression holds the names of the request
    it last evaluated, so each thread keeps its own. Only for a model
    without role definitions ([role_definition]): their `g` functions are
    made anew for each call and must not be kept (the model in policies/
    has none; a model with them parses per call, as pycasbin does)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self._parsed = threading.local()
        self._keep = "g" not in set(self.model.keys())

    def _get_expression(self, expr: str, functions: object = None) -> object:
        if not self._keep:
            return super()._get_expression(expr, functions)
        kept = getattr(self._parsed, "expressions", None)
        if kept is None:
            kept = self._parsed.expressions = {}
        found = kept.get(expr)
        if found is None:
            found = kept[expr] = super()._get_expression(expr, functions)
            self.parsed += 1
        return found

    parsed = 0  # expressions parsed (tests: once per matcher and thread)


class PolicyEngine:
    """pycasbin loaded with policies/model.conf, levels.csv and the rows generated
    from roles.yaml. The only place decisions are taken; any error denies."""

    def __init__(self, policies: Policies) -> None:
        self.policies = policies
        try:
            model = casbin.Enforcer.new_model(text=policies.files["model.conf"])
            self._enforcer = _Enforcer(model, _TextAdapter(policies.files["levels.csv"]))
        except Exception as exc:
            raise PolicyFileError(f"{policies.origin}/model.conf or levels.csv: {exc}") from exc
        self._enforcer.enable_auto_save(False)  # rows live in memory only
        self._enforcer.add_policies(management_rules(policies))
        self._spaces = self._enforcer.new_enforce_context("2")
        # Management answers by (role, action, status): the rows never change
        # after loading (a new policy set is a new PolicyEngine), and a list
        # asks the same dozen questions on every request.
        self._management: dict[tuple[str, str, str], bool] = {}

    def allows(self, role: str | None, action: str, structure_status: str) -> bool:
        """Management: may `role` perform `action` on a structure in this status?"""
        key = (role or NO_ROLE, action, structure_status)
        known = self._management.get(key)
        if known is not None:
            return known
        if action not in self.policies.actions:
            raise ValueError(f"unknown management action {action!r}")
        try:
            allowed = bool(self._enforcer.enforce(*key))
        except Exception:  # any engine failure is a deny, and is logged (never kept)
            log.exception("management engine error: deny")
            return False
        self._management[key] = allowed
        return allowed

    def space(self, sub: SubjectFacts, obj: SpaceFacts, action: str) -> tuple[bool, list[str]]:
        """Spaces: the decision and the `p2` row that allowed it ([] when denied)."""
        try:
            allowed, row = self._enforcer.enforce_ex(self._spaces, sub, obj, action)
            return bool(allowed), list(row or [])
        except Exception:  # any engine failure is a deny, and is logged
            log.exception("space engine error: deny")
            return False, []

    def parsed_matchers(self) -> int:
        """How many times a matcher was parsed (see _Enforcer)."""
        return self._enforcer.parsed

    def level_rows(self) -> list[list[str]]:
        return [list(r) for r in self._enforcer.get_named_policy("p2")]


class _TextAdapter(Adapter):
    """Casbin policy rows from a text in Casbin's CSV format (levels.csv), read
    line by line as Casbin's own file adapter reads a file."""

    def __init__(self, text: str) -> None:
        self._text = text

    def load_policy(self, model: casbin.Model) -> None:
        for line in self._text.splitlines():
            load_policy_line(line.strip(), model)


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
