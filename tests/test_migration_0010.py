"""Migration 0010 makes service codes unique per structure whatever their case.
On existing data with codes that differ only by case it stops, changes
nothing, and names every duplicate; once they are renamed, it passes."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from authz.config import load_settings
from authz.db import make_engine, upgrade

NOW = "2026-11-01 10:00:00"


def structure(conn, sid: int) -> None:
    conn.execute(
        text(
            "INSERT INTO structures (id, identifier_type, identifier_value, designation,"
            " kind, status, centrally_managed, invoice_requires_service,"
            " legal_commitment_required, created_at, updated_at) VALUES"
            " (:id, 'AUTRE', :value, 'S', 'private', 'active', false, false, false,"
            " :now, :now)"
        ),
        {"id": sid, "value": f"S-{sid}", "now": NOW},
    )


def service(conn, service_id: int, sid: int, code: str) -> None:
    conn.execute(
        text(
            "INSERT INTO services (id, structure_id, code, label, active, created_at,"
            " updated_at) VALUES (:id, :sid, :code, 'L', true, :now, :now)"
        ),
        {"id": service_id, "sid": sid, "code": code, "now": NOW},
    )


def test_0010_stops_on_case_duplicates_then_passes_once_they_are_renamed(empty_database_url):
    engine = make_engine(load_settings({"database_url": empty_database_url}))
    try:
        upgrade(engine, "0009")
        with engine.begin() as conn:
            structure(conn, 1)
            structure(conn, 2)
            service(conn, 1, 1, "LIVRAISON")
            service(conn, 2, 1, "livraison")
            service(conn, 3, 1, "ATELIER")
            service(conn, 4, 2, "atelier")  # another structure: not a duplicate
            service(conn, 5, 2, "ATELIER")
        with pytest.raises(Exception, match="Migration 0010 stopped") as stopped:
            upgrade(engine)
        message = str(stopped.value)
        assert "structure 1: 'LIVRAISON' (service 1), 'livraison' (service 2)" in message
        assert "structure 2: 'atelier' (service 4), 'ATELIER' (service 5)" in message
        with engine.connect() as conn:
            at = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert at == "0009"

        with engine.begin() as conn:
            conn.execute(text("UPDATE services SET code = 'LIVRAISON-2' WHERE id = 2"))
            conn.execute(text("UPDATE services SET code = 'ATELIER-2' WHERE id = 4"))
        upgrade(engine, "0010")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0010"
        with pytest.raises(IntegrityError), engine.begin() as conn:
            service(conn, 6, 1, "Atelier")
        with engine.begin() as conn:  # the same code in another structure is fine
            service(conn, 7, 2, "livraison")
    finally:
        engine.dispose()
