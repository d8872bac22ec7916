"""A service as the management API names it: its id, or its code within the
structure at hand, case ignored (docs/manager-guide.md, "Naming a service").

A code is looked up among one structure's services only: another structure's
code is unknown there, exactly like an id that is not one of its services, and
gets the same answer (`422 unknown_service`). Codes are unique per structure
whatever their case (`LIVRAISON` and `livraison` cannot coexist: migration
0010's index), so a code names at most one service.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Service

# What a request body names a service by: its id, or its code.
ServiceRef = int | str


def code_key(code: str) -> str:
    """How service codes compare: case ignored. The same folding as the
    database's lower() on ASCII codes (migration 0010's unique index); the
    service checks non-ASCII codes in Python with this one."""
    return code.strip().lower()


def codes_of(session: Session, structure_id: int) -> dict[str, int]:
    """The structure's services, code key → id."""
    rows = session.execute(
        select(Service.code, Service.id).where(Service.structure_id == structure_id)
    )
    return {code_key(code): service_id for code, service_id in rows}


def resolve(session: Session, structure_id: int, ref: ServiceRef | None) -> int | str | None:
    """The id `ref` names in the structure: an int as given (the caller checks
    it is one of the structure's services, as for any id), a known code's id,
    or the code itself (a str) when the structure has no such code. None stays
    None (all services)."""
    if not isinstance(ref, str):
        return ref
    return codes_of(session, structure_id).get(code_key(ref), ref)


def resolve_all(
    session: Session, structure_id: int, refs: Iterable[ServiceRef]
) -> tuple[list[int], list[str]]:
    """(ids, unknown codes) of `refs`, in order, each once."""
    refs = list(refs)
    codes = codes_of(session, structure_id) if any(isinstance(r, str) for r in refs) else {}
    ids: list[int] = []
    unknown: list[str] = []
    for ref in refs:
        service_id = codes.get(code_key(ref)) if isinstance(ref, str) else ref
        if service_id is None:
            unknown.append(str(ref))
        elif service_id not in ids:
            ids.append(service_id)
    return ids, unknown
