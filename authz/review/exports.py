"""Exports for the security team: the rights actually held, and the policy the
engine runs.

- `effective_rights`: what every member may actually do now, one row per
  (user, structure, scope, space), decided by the Decider (the same answers as
  POST /v1/checks), with where the right comes from (subscription or role
  default) read from the tables.
- `casbin_policy_csv`: the policy the engine runs, in Casbin's CSV format.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Attachment, Structure, Subscription, User

from .. import roles
from ..engine.decisions import Decider, Question
from ..engine.policy import management_rules
from ..errors import NotFound
from ..roles import in_force
from ..runtime import Runtime
from ..workflows.users import neutralize

RIGHTS_COLUMNS = (
    "user_id",
    "login_email",
    "role",
    "structure_id",
    "designation",
    "service",
    "space",
    "level",
    "since",
    "granted_by",
    "source",
)


def export_scope(session: Session, structure_id: int | None = None) -> list[int]:
    """Ids of the structures an export covers, in order. Raises NotFound."""
    if structure_id is None:
        return list(session.scalars(select(Structure.id).order_by(Structure.id)))
    if session.get(Structure, structure_id) is None:
        raise NotFound("No such structure.")
    return [structure_id]


# The levels a right is exported at, the first the engine allows.
LEVELS = ("modify", "consult")


def _decided(
    decider: Decider, structure_id: int, today: dt.date
) -> list[tuple[int, str | None, str | None, str, str, str]]:
    """(user, role, service, space, level, engine rule) for every right held on
    the structure, at one revision. The level is modify when the engine allows
    modify, else consult when it allows consult: the facts of each user,
    scope and space gathered once for both (Decider.first_allowed; grants
    would ask create too, and the rule would need a third)."""
    out = []
    spaces = [space.code for space in decider.policy.policies.spaces]
    with decider.reading():
        scopes = decider.scopes(structure_id)
        for user_id in decider.members_of(structure_id):
            role = decider.role_of(user_id, structure_id, today)
            for service in scopes:
                for space in spaces:
                    found = decider.first_allowed(
                        Question(user_id, structure_id, space, "modify", service),
                        LEVELS,
                        today,
                    )
                    if found is not None:
                        level, decision = found
                        out.append((user_id, role, service, space, level, decision.rule or ""))
    return out


def _structure_rights(
    session: Session, rt: Runtime, structure_id: int, today: dt.date
) -> list[dict[str, Any]]:
    decided = _decided(rt.decider, structure_id, today)
    if not decided:
        return []
    designation = session.scalar(select(Structure.designation).where(Structure.id == structure_id))
    subscriptions = {
        s.id: s
        for s in session.scalars(
            select(Subscription).where(Subscription.structure_id == structure_id)
        )
    }
    attachments: dict[int, list[Attachment]] = defaultdict(list)
    for att in session.scalars(
        select(Attachment)
        .where(Attachment.structure_id == structure_id, Attachment.status == "validated")
        .order_by(Attachment.valid_from)
    ):
        if in_force(att, today):
            attachments[att.user_id].append(att)
    people = {user_id for user_id, *_ in decided}
    people |= {s.granted_by_id for s in subscriptions.values() if s.granted_by_id}
    people |= {a.created_by_id for rows in attachments.values() for a in rows if a.created_by_id}
    emails = dict(
        session.execute(select(User.id, User.login_email).where(User.id.in_(people))).all()
    )
    rows = []
    for user_id, role, service, space, level, rule in decided:
        head = rule.split(" ", 1)[0]
        if head.startswith("subscription:"):
            sub = subscriptions[int(head.split(":", 1)[1])]
            since: object = sub.created_at.isoformat()
            granted_by, source = emails.get(sub.granted_by_id or 0, ""), head
        else:
            first = attachments[user_id][0] if attachments[user_id] else None
            since = first.valid_from.isoformat() if first else ""
            granted_by = emails.get(first.created_by_id or 0, "") if first else ""
            source = "role-default"
        rows.append(
            {
                "user_id": user_id,
                "login_email": emails.get(user_id, ""),
                "role": role or "",
                "structure_id": structure_id,
                "designation": designation,
                "service": service or "",
                "space": space,
                "level": level,
                "since": since,
                "granted_by": granted_by,
                "source": source,
            }
        )
    return rows


def effective_rights(
    sessions: Callable[[], Session],
    rt: Runtime,
    structure_id: int | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> Iterator[dict]:
    """One row per right actually held now (columns RIGHTS_COLUMNS), structure by
    structure: the level is "modify" when the engine allows modify, "consult"
    when it allows only consult. `progress(1)` is called after each structure.
    Each structure is read in its own short session, so a slow reader of a
    streamed export holds no transaction open.

    Raises NotFound (unknown structure_id).
    """
    today = roles.today()
    with sessions() as session:
        scope = export_scope(session, structure_id)
    for sid in scope:
        with sessions() as session:
            rows = list(_structure_rights(session, rt, sid, today))
        yield from rows
        if progress is not None:
            progress(1)


def rights_csv(rows: Iterable[dict]) -> Iterator[str]:
    """CSV text chunks, header first; cells a spreadsheet would run as formulas
    are neutralised."""

    def line(cells: Iterable[object]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer).writerow([neutralize(cell) for cell in cells])
        return buffer.getvalue()

    yield line(RIGHTS_COLUMNS)
    for row in rows:
        yield line(row[c] for c in RIGHTS_COLUMNS)


def casbin_policy_csv(rt: Runtime) -> str:
    """The `p` rows generated from roles.yaml and the `p2` rows of levels.csv,
    in Casbin's CSV policy format (readable by any Casbin file adapter)."""
    lines = [
        "# Casbin policy of the authorization service (model: policies/model.conf).",
        "# p: role, management action, structure status (generated from roles.yaml).",
        "# p2: level, space action, structure status (policies/levels.csv).",
    ]
    lines += ["p, " + ", ".join(row) for row in management_rules(rt.policies)]
    lines += ["p2, " + ", ".join(row) for row in rt.management.level_rows()]
    return "\n".join(lines) + "\n"
