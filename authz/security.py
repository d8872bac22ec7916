"""Password hashing (argon2id) and opaque tokens.

Passwords, technical-user secrets and API keys are hashed with argon2id. Bearer
tokens and activation links are 256-bit random values, stored as their SHA-256
digest: a random value of that size cannot be guessed, so a slow salted hash
adds nothing, while a plain digest lets us find the row by index
(docs/decisions.md, "Hashing").
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .config import Settings


class Hasher:
    def __init__(self, settings: Settings) -> None:
        self._ph = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        # Verified against when the account does not exist, so that a log-in for
        # an unknown email costs the same time as one with a wrong password.
        self._dummy = self._ph.hash(secrets.token_urlsafe(16))

    def hash(self, secret: str) -> str:
        return self._ph.hash(secret)

    def verify(self, stored: str | None, secret: str) -> bool:
        try:
            self._ph.verify(stored or self._dummy, secret)  # raises unless they match
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None

    def needs_rehash(self, stored: str) -> bool:
        return self._ph.check_needs_rehash(stored)


def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
