"""Client applications: the programs that ask for decisions with an API key.

A key reads `ak_<key_id>_<secret>`. The key id is public and finds the row; only
the argon2id hash of the secret is stored, so the key is shown once, at creation.
Verifying argon2 on every call would make each decision cost tens of
milliseconds, so a process remembers which keys it has already verified
(see `authenticate_client`); the row is still read on every call, so revoking or
replacing a key takes effect at once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections import OrderedDict

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import ClientApplication, utcnow

from ..errors import Conflict, Invalid, NotFound
from ..runtime import Runtime
from . import throttle
from .records import commit, record

KEY_PREFIX = "ak_"
NAME_MAX = 100
KEY_RE = re.compile(r"^ak_(?P<key_id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_\-]{43})$")
# Verified keys remembered per process (least recently used dropped first).
CACHE_SIZE = 1024

_verified: OrderedDict[bytes, str] = OrderedDict()
_verified_lock = threading.Lock()


def _name(value: str) -> str:
    name = (value or "").strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise Invalid(
            f"A client name must have 1 to {NAME_MAX} characters.",
            errors={"name": [f"Length must be 1 to {NAME_MAX}."]},
        )
    return name


def create_client(session: Session, rt: Runtime, name: str) -> tuple[ClientApplication, str]:
    """Register a client application; return it and its API key (shown once:
    only the argon2id hash of the key's secret is stored). Commits.

    Raises Invalid (empty or too long name), Conflict `client_name_taken`.
    """
    name = _name(name)
    conflict = Conflict(
        f"A client application is already named {name!r}.", code="client_name_taken"
    )
    if session.scalar(select(ClientApplication.id).where(ClientApplication.name == name)):
        raise conflict
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    client = ClientApplication(
        name=name, key_id=key_id, key_hash=rt.hasher.hash(secret), active=True
    )
    session.add(client)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent creation took the name first
        session.rollback()
        raise conflict from exc
    record(
        session,
        action="client.created",
        actor=None,
        structure_id=None,
        after={"name": name, "key_id": key_id},
    )
    commit(session, rt)
    return client, f"{KEY_PREFIX}{key_id}_{secret}"


def authenticate_client(
    session: Session, rt: Runtime, presented_key: str, address: str | None = None
) -> ClientApplication | None:
    """The active client application owning `presented_key`, or None (malformed,
    unknown, wrong secret or revoked: not told apart).

    A key already verified by this process against the row's current hash is
    accepted without running argon2 again; the row is read every time, so a
    revoked client or a replaced hash is refused at once. Otherwise the secret
    is checked under the brute-force limit of the caller's `address` (the
    log-in's; not per key, whose id is public: anyone could lock a client out).

    Raises TooManyAttempts (the address is locked out).
    """
    match = KEY_RE.match(presented_key or "")
    if match is None:
        return None
    client = session.scalar(
        select(ClientApplication).where(ClientApplication.key_id == match["key_id"])
    )
    if client is None or not client.active:
        return None
    fingerprint = hashlib.sha256(presented_key.encode("ascii")).digest()
    with _verified_lock:
        cached = _verified.get(fingerprint)
        if cached is not None:
            _verified.move_to_end(fingerprint)
    if cached is not None and secrets.compare_digest(cached, client.key_hash):
        return client
    with rt.sessions() as counting:
        now = utcnow()
        keys = throttle.reserve(counting, rt, None, address, now)
        if not rt.hasher.verify(client.key_hash, match["secret"]):
            throttle.record_failure(counting, rt, keys, now)
            return None
        throttle.forget_login(counting, keys)
        counting.commit()
    with _verified_lock:
        _verified[fingerprint] = client.key_hash
        _verified.move_to_end(fingerprint)
        while len(_verified) > CACHE_SIZE:
            _verified.popitem(last=False)
    return client


def revoke_client(session: Session, rt: Runtime, name: str) -> ClientApplication:
    """Revoke a client application's key at once (every process refuses it from
    its next call). Commits.

    Raises NotFound (no client of that name), Conflict `client_revoked` (already
    revoked).
    """
    client = session.scalar(
        select(ClientApplication).where(ClientApplication.name == (name or "").strip())
    )
    if client is None:
        raise NotFound(f"No client application is named {name!r}.")
    if not client.active:
        raise Conflict(
            f"The client application {client.name!r} is already revoked.", code="client_revoked"
        )
    client.active = False
    client.revoked_at = utcnow()
    record(
        session,
        action="client.revoked",
        actor=None,
        structure_id=None,
        before={"name": client.name, "key_id": client.key_id, "active": True},
        after={"name": client.name, "key_id": client.key_id, "active": False},
    )
    commit(session, rt)
    return client
