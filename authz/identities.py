"""Who a presented credential is, remembered by each process while nothing that
could invalidate it has changed.

Resolving a bearer token or an API key reads its row (and the account's) on
every request; the answer only changes when a token is revoked or deleted, an
account's status changes, or a client's key is replaced or revoked. Every such
change bumps `policy_revision.identity_revision` in its own transaction
(database triggers, migration 0011), and the decider reads that counter in the
same poll as the policy revision (Decider.identity_revision). This cache holds
resolved identities for one value of the counter and forgets them all as soon
as a request reads another: a revoked key, a logged-out token or a deactivated
account is refused by the next request that arrives after the change commits,
in every worker of every instance.

Keys are the SHA-256 digest of the presented credential, never the credential.
Only successful resolutions are kept; a token's expiry is checked on every hit.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from dataclasses import dataclass

# Entries kept per process (least recently used dropped first).
CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Identity:
    """A resolved credential: a person's token or a client application's key."""

    user_id: int | None = None
    token_id: int | None = None
    client_id: int | None = None
    # The token's expiry (None: a client key, which does not expire).
    expires_at: dt.datetime | None = None


class IdentityCache:
    """fingerprint -> Identity, valid at one identity revision."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, Identity] = OrderedDict()
        self._revision: int | None = None

    def get(self, fingerprint: bytes, revision: int, now: dt.datetime) -> Identity | None:
        """The identity cached for `fingerprint`, if it was resolved at identity
        revision `revision` (the one the caller just read) and has not expired;
        a different revision drops every entry."""
        with self._lock:
            if revision != self._revision:
                self._entries.clear()
                self._revision = revision
                return None
            found = self._entries.get(fingerprint)
            if found is None:
                return None
            self._entries.move_to_end(fingerprint)
        if found.expires_at is not None and found.expires_at <= now:
            return None
        return found

    def put(self, fingerprint: bytes, revision: int, identity: Identity) -> None:
        """Remember `identity`, resolved by a read that started after identity
        revision `revision` was read (so it reflects every change up to it)."""
        with self._lock:
            if revision != self._revision:
                self._entries.clear()
                self._revision = revision
            self._entries[fingerprint] = identity
            self._entries.move_to_end(fingerprint)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
