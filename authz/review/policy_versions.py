"""Policy versions: the policy files applied live, versioned and audited.

The files of policies/ (or AUTHZ_POLICY_DIR) stay the reviewed source. Applying
a set (`authz policy apply DIR`, `authz policy rollback N`, and `authz db
upgrade` for the first one) first runs its own assertion tests (tests/*.yaml,
as `authz policy test`) and refuses it, changing nothing, if any fails or if
it has none. A set that passes is stored as a new version — who, when, its
sha256, the files themselves, and the decisions it changes on the database
(as `authz policy diff`) — and named in the policy_revision row in the same
transaction that bumps the revision, with the space catalogue synchronised.
Every worker of every instance sees the revision move on its next check and
decides with the new version from that revision on (Decider.ensure_fresh); no
restart. docs/operations.md, "Policy versions"; docs/decisions.md.
"""

from __future__ import annotations

import datetime as dt
import getpass
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models import PolicyRevision, PolicyVersion, utcnow

from .. import db
from ..engine.policy import (
    PolicyEngine,
    PolicyFileError,
    digest,
    parse_policies,
    read_policy_files,
    sync_space_catalogue,
    write_policy_files,
)
from ..errors import Conflict, NotFound
from ..runtime import Runtime
from ..workflows.records import bump_revision
from . import policytest

# How many changed decisions a version keeps word for word (all are counted).
CHANGES_KEPT = 1000
# applied: stored as a new version and in force; unchanged: the set in force
# already has this digest; refused: its assertion tests failed (or it has none).
Outcome = Literal["applied", "unchanged", "refused"]


@dataclass(frozen=True)
class Applied:
    outcome: Outcome
    digest: str
    # The assertion tests the set was run against (file paths relative to the set).
    tests: policytest.RunReport | None = None
    changes: list[policytest.Change] = field(default_factory=list)
    version: int | None = None  # the new version (applied) or the one in force (unchanged)
    revision: int | None = None  # the revision it is in force from (applied)


def default_actor() -> str:
    """Who applies, when not said: the operating-system user."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001  (no user name in some containers)
        return "unknown"


def in_force(session: Session) -> int | None:
    """The policy version in force (None: none stored yet)."""
    return session.scalar(select(PolicyRevision.policy_version).where(PolicyRevision.id == 1))


def stored_files(session: Session, version: int) -> dict[str, str]:
    """The files of stored version `version`. Raises NotFound."""
    files = session.scalar(select(PolicyVersion.files).where(PolicyVersion.version == version))
    if files is None:
        raise NotFound(f"No policy version {version}.")
    return dict(files)


def history(session: Session) -> list[PolicyVersion]:
    """Every stored version, newest first."""
    return list(session.scalars(select(PolicyVersion).order_by(PolicyVersion.version.desc())))


def apply_directory(
    rt: Runtime, directory: str | Path, *, actor: str | None = None, source: str | None = None
) -> Applied:
    """Apply the policy files of `directory` (see apply_files). Raises
    PolicyFileError (a file missing or malformed), Conflict."""
    directory = Path(directory)
    return apply_files(
        rt,
        read_policy_files(directory),
        actor=actor,
        source=source or f"authz policy apply {directory.resolve()}",
    )


def rollback(rt: Runtime, version: int, *, actor: str | None = None) -> Applied:
    """Apply stored version `version` again, as a new version, after running its
    assertion tests. Raises NotFound, Conflict."""
    with rt.read_sessions() as session:
        files = stored_files(session, version)
    return apply_files(
        rt, files, actor=actor, source=f"authz policy rollback {version}", rollback_of=version
    )


def store_first_version(rt: Runtime, *, actor: str | None = None) -> Applied | None:
    """When the database stores no policy version yet, apply the files of
    AUTHZ_POLICY_DIR as version 1, through the same tests (`authz db upgrade`).
    None when a version is stored already."""
    with rt.read_sessions() as session:
        if session.scalar(select(PolicyVersion.version).limit(1)) is not None:
            return None
    return apply_files(
        rt,
        read_policy_files(rt.settings.policy_dir),
        actor=actor,
        source=f"authz db upgrade (first version, {Path(rt.settings.policy_dir).resolve()})",
        first=True,
    )


def apply_files(
    rt: Runtime,
    files: Mapping[str, str],
    *,
    actor: str | None,
    source: str,
    rollback_of: int | None = None,
    first: bool = False,
) -> Applied:
    """Test, then store and put in force, a policy set given as its files' texts.

    Refused (nothing changed) when an assertion test fails or there is none;
    unchanged when the set in force has the same digest; else stored as the next
    version, in force from the revision its transaction bumps. With `first`, only
    while no version is stored (two `authz db upgrade` at once store one).

    Raises PolicyFileError (the files do not load), Conflict `policy_changed`
    (another version was applied while this one was being tested).
    """
    files = dict(files)
    new_digest = digest(files)
    policies = parse_policies(files, origin=source)
    PolicyEngine(policies)  # the model and levels load (raises PolicyFileError)
    with rt.read_sessions() as session:
        current = in_force(session)
        current_files = stored_files(session, current) if current is not None else None
    if current_files is not None and digest(current_files) == new_digest:
        return Applied("unchanged", new_digest, version=current)
    with tempfile.TemporaryDirectory(prefix="authz-policy-apply-") as tmp:
        new_dir = write_policy_files(files, Path(tmp) / "new")
        tests = policytest.run_files(policytest.default_files(new_dir), new_dir)
        tests = _relative(tests, new_dir)
        if not tests.files or not tests.passed:
            return Applied("refused", new_digest, tests=tests)
        changes: list[policytest.Change] = []
        if not first:
            old_dir = (
                write_policy_files(current_files, Path(tmp) / "old")
                if current_files is not None
                else Path(rt.settings.policy_dir)
            )
            changes = policytest.diff_database(
                old_dir, new_dir, rt.decider.db_engine, rt.decider.snapshots
            )
    with rt.sessions.begin() as session:
        # One version at a time (the lock of schema changes and catalogue syncs).
        db.lock_schema(session.connection())
        if first and session.scalar(select(PolicyVersion.version).limit(1)) is not None:
            return Applied("unchanged", new_digest, tests=tests, version=in_force(session))
        if in_force(session) != current:
            raise Conflict(
                "Another policy version was applied meanwhile; run the command again.",
                code="policy_changed",
            )
        version = (session.scalar(select(func.max(PolicyVersion.version))) or 0) + 1
        revision = bump_revision(session, policy=True)
        session.execute(
            update(PolicyRevision).where(PolicyRevision.id == 1).values(policy_version=version)
        )
        session.add(
            PolicyVersion(
                version=version,
                digest=new_digest,
                files=files,
                applied_by=(actor or default_actor())[:200],
                applied_at=utcnow(),
                revision=revision,
                source=source[:300],
                rollback_of=rollback_of,
                changes={
                    "count": len(changes),
                    "decisions": [str(c) for c in changes[:CHANGES_KEPT]],
                },
            )
        )
        sync_space_catalogue(session, policies)
    return Applied(
        "applied", new_digest, tests=tests, changes=changes, version=version, revision=revision
    )


def _relative(report: policytest.RunReport, root: Path) -> policytest.RunReport:
    """The report with its files named relative to the set (tests/x.yaml), not
    by the temporary folder they were run from."""
    for result in report.files:
        result.path = result.path.relative_to(root)
    return report


def applied_at(version: PolicyVersion) -> str:
    return version.applied_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


__all__ = [
    "CHANGES_KEPT",
    "Applied",
    "PolicyFileError",
    "applied_at",
    "apply_directory",
    "apply_files",
    "default_actor",
    "history",
    "in_force",
    "rollback",
    "store_first_version",
    "stored_files",
]
