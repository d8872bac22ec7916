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
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Attachment, Structure, Subscription, User

from .. import roles
from ..engine.decisions import Decider
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
    modify, else consult when it allows consult (Decider.rights: every action
    allowed, the structure's members enumerated at once)."""
    out: list[tuple[int, str | None, str | None, str, str, str]] = []
    rank = {level: n for n, level in enumerate(LEVELS)}
    with decider.reading():
        for user_id, role, rights in decider.member_rights(structure_id, today):
            levels: dict[tuple[str | None, str], tuple[str, str]] = {}
            for service, space, action, rule in rights:
                if action in rank:
                    held = levels.get((service, space))
                    if held is None or rank[action] < rank[held[0]]:
                        levels[(service, space)] = (action, rule)
            out.extend(
                (user_id, role, service, space, level, rule)
                for (service, space), (level, rule) in levels.items()
            )
    return out


# Structures read together: one query each for their designations,
# subscriptions, attachments and people (not four per structure).
BLOCK = 256
# Ids per IN list (well below SQLite's and PostgreSQL's limits).
IN_LIST = 5000


def _block_rights(
    session: Session,
    rt: Runtime,
    structure_ids: list[int],
    today: dt.date,
    text: Callable[[str], str],
) -> Iterator[tuple[int, list[tuple[Any, ...]]]]:
    """The rows of each structure of the block (tuples in RIGHTS_COLUMNS
    order), in order: decided by the engine structure by structure (each at
    one revision), then their provenance read from the tables for the whole
    block, as plain rows (no ORM objects: a block holds many thousands of
    subscriptions). `text` is applied to every cell of text that comes from
    the data or the policy files (emails, designations, service codes,
    roles, spaces, levels), once per distinct value."""
    decided = {sid: _decided(rt.decider, sid, today) for sid in structure_ids}
    conn = session.connection()  # Core rows: the ORM's row handling is not needed
    held = [sid for sid in structure_ids if decided[sid]]
    designations: dict[int, str] = {}
    subscriptions: dict[int, tuple[str, int | None]] = {}
    # The first validated attachment in force of each member (the role
    # default's since and granted by).
    first: dict[tuple[int, int], tuple[str, int | None]] = {}
    if held:
        for sid, designation in conn.execute(
            select(Structure.id, Structure.designation).where(Structure.id.in_(held))
        ).all():
            designations[sid] = text(designation)
        for sub_id, created_at, granted_by_id in conn.execute(
            select(Subscription.id, Subscription.created_at, Subscription.granted_by_id).where(
                Subscription.structure_id.in_(held)
            )
        ).all():
            subscriptions[sub_id] = (created_at.isoformat(), granted_by_id)
        for att in conn.execute(
            select(
                Attachment.structure_id,
                Attachment.user_id,
                Attachment.valid_from,
                Attachment.valid_until,
                Attachment.created_by_id,
            )
            .where(Attachment.structure_id.in_(held), Attachment.status == "validated")
            .order_by(Attachment.valid_from)
        ).all():
            key = (att.structure_id, att.user_id)
            if key not in first and in_force(att, today):
                first[key] = (att.valid_from.isoformat(), att.created_by_id)
    people = {user_id for sid in held for user_id, *_ in decided[sid]}
    people |= {by for _, by in subscriptions.values() if by}
    people |= {by for _, by in first.values() if by}
    wanted = sorted(people)
    emails: dict[int, str] = {}
    for n in range(0, len(wanted), IN_LIST):
        chunk = wanted[n : n + IN_LIST]
        for uid, email in conn.execute(
            select(User.id, User.login_email).where(User.id.in_(chunk))
        ).all():
            emails[uid] = text(email)
    words: dict[str | None, str] = {None: ""}  # roles, services, spaces, levels
    # A subscription or attachment gone since the engine's revision: no provenance.
    unknown = ("", None)
    for structure_id in structure_ids:
        rows = []
        designation = designations.get(structure_id, "")
        for user_id, role, service, space, level, rule in decided[structure_id]:
            head = rule.split(" ", 1)[0]
            if head.startswith("subscription:"):
                since, by = subscriptions.get(int(head[13:]), unknown)
                source = head
            else:
                since, by = first.get((structure_id, user_id), unknown)
                source = "role-default"
            cells = []
            for word in (role, service, space, level):
                found = words.get(word)
                if found is None:
                    found = words[word] = text(word or "")
                cells.append(found)
            rows.append(
                (
                    user_id,
                    emails.get(user_id, ""),
                    cells[0],
                    structure_id,
                    designation,
                    cells[1],
                    cells[2],
                    cells[3],
                    since,
                    emails.get(by or 0, ""),
                    source,
                )
            )
        yield structure_id, rows


def rights_rows(
    sessions: Callable[[], Session],
    rt: Runtime,
    structure_id: int | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    csv_cells: bool = False,
) -> Iterator[tuple[Any, ...]]:
    """One row per right actually held now (a tuple in RIGHTS_COLUMNS order),
    structure by structure: the level is "modify" when the engine allows
    modify, "consult" when it allows only consult. `progress(1)` is called
    after each structure. Each block of structures (BLOCK) is read in its own
    short session, so a slow reader of a streamed export holds no
    transaction open. With `csv_cells`, text cells that a spreadsheet would
    run as formulas are neutralised (see rights_csv).

    Raises NotFound (unknown structure_id).
    """
    today = roles.today()
    text: Callable[[str], str] = neutralize if csv_cells else _same
    with sessions() as session:
        scope = export_scope(session, structure_id)
    if len(scope) > 1:
        rt.decider.ready_for_enumeration()
    for n in range(0, len(scope), BLOCK):
        with sessions() as session:
            block = list(_block_rights(session, rt, scope[n : n + BLOCK], today, text))
        for _sid, rows in block:
            yield from rows
            if progress is not None:
                progress(1)


def _same(value: str) -> str:
    return value


def effective_rights(
    sessions: Callable[[], Session],
    rt: Runtime,
    structure_id: int | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> Iterator[dict]:
    """rights_rows as dicts (the JSON export). Raises NotFound."""
    for row in rights_rows(sessions, rt, structure_id, progress=progress):
        yield dict(zip(RIGHTS_COLUMNS, row, strict=True))


def rights_csv(rows: Iterable[tuple[Any, ...]], chunk: int = 1 << 16) -> Iterator[str]:
    """CSV text chunks of about `chunk` characters, header first, from rows
    made with rights_rows(csv_cells=True): cells a spreadsheet would run as
    formulas (text starting with = + - @ tab or carriage return) carry a
    leading single quote. The other cells are numbers, ISO dates and the
    service's own words (subscription:N, role-default)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(RIGHTS_COLUMNS)
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= 512:
            writer.writerows(batch)
            batch.clear()
            if buffer.tell() >= chunk:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    writer.writerows(batch)
    yield buffer.getvalue()


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
