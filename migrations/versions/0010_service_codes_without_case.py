"""service codes: unique per structure whatever their case

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 21:00:00.000000

A unique index on (structure_id, lower(code)): `LIVRAISON` and `livraison`
cannot both be codes of one structure, since the API finds a service by its
code without case (authz/workflows/service_refs.py). The service checks the
rule in Python too (`409 service_code_taken`), for non-ASCII codes that
SQLite's lower() leaves as they are.

Existing case-duplicates are NOT resolved here: a code is what clients send in
their checks, so renaming one silently would break them. The migration stops,
before changing anything, with the list of the duplicates and what to do
(docs/operations.md, "Migration 0010"); fix them and run it again.
"""

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None
# Additive (an index): the code 0009 declared still runs on this schema; it
# answers a case-duplicate code with the same 409 service_code_taken (its
# insert fails on the index and is caught like any taken code).
compatible_with = "0005"

INDEX = "uq_services_code_nocase"


def case_duplicates(conn) -> list[tuple[int, list[tuple[int, str]]]]:
    """(structure id, [(service id, code)…]) for each group of codes of one
    structure that differ only by case."""
    groups: dict[tuple[int, str], list[tuple[int, str]]] = defaultdict(list)
    rows = conn.execute(sa.text("SELECT id, structure_id, code FROM services ORDER BY id"))
    for service_id, structure_id, code in rows:
        groups[(structure_id, code.strip().lower())].append((service_id, code))
    return [(sid, found) for (sid, _), found in sorted(groups.items()) if len(found) > 1]


def upgrade() -> None:
    duplicates = case_duplicates(op.get_bind())
    if duplicates:
        listed = "; ".join(
            f"structure {sid}: " + ", ".join(f"{code!r} (service {svc})" for svc, code in found)
            for sid, found in duplicates
        )
        raise RuntimeError(
            "Migration 0010 stopped, nothing changed: service codes must be unique per "
            f"structure whatever their case, and these differ only by case: {listed}. "
            "Give the services of each group distinct codes (rename all but one in the "
            "services table by their id, and tell the clients that check with a renamed "
            "code), then upgrade again."
        )
    op.create_index(INDEX, "services", ["structure_id", sa.text("lower(code)")], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="services")
