"""Migration 0006 fills what it adds for the rows already there: the structure
an account was created for (from the `account.created` history entries) and
the login's look-alike key."""

from __future__ import annotations

from sqlalchemy import text

from authz import logins
from authz.config import load_settings
from authz.db import make_engine, upgrade

NOW = "2026-11-01 10:00:00"


def test_0006_fills_the_account_origin_and_the_login_skeletons(empty_database_url):
    engine = make_engine(load_settings({"database_url": empty_database_url}))
    try:
        upgrade(engine, "0005")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO structures (id, identifier_type, identifier_value, designation,"
                    " kind, status, centrally_managed, invoice_requires_service,"
                    " legal_commitment_required, created_at, updated_at) VALUES"
                    " (1, 'AUTRE', 'S-1', 'S', 'private', 'active', false, false, false,"
                    " :now, :now)"
                ),
                {"now": NOW},
            )
            for uid, login in ((1, "manager@example.org"), (2, "\u0441laire@example.org")):
                conn.execute(
                    text(
                        "INSERT INTO users (id, login_email, contact_email, last_name,"
                        " first_name, kind, status, created_at, updated_at) VALUES"
                        " (:id, :login, :login, 'L', 'F', 'person', 'active', :now, :now)"
                    ),
                    {"id": uid, "login": login, "now": NOW},
                )
            conn.execute(
                text(
                    "INSERT INTO history_entries (structure_id, actor_id, action,"
                    " target_user_id, created_at) VALUES"
                    " (1, 1, 'account.created', 2, :now)"
                ),
                {"now": NOW},
            )
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, created_for_structure_id, login_skeleton FROM users ORDER BY id")
            ).all()
        assert [tuple(r) for r in rows] == [
            (1, None, logins.skeleton("manager@example.org")),
            (2, 1, "claire@example.org"),
        ]
    finally:
        engine.dispose()
