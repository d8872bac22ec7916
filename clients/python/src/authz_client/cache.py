"""An optional local cache of decisions, kept right by the change feed.

Entries are dropped when the feed names a change that concerns them (the
user, the structure, the user on the structure; a policy version or a bulk
change drops everything), from the revision of that change on. The cache is
bounded (least recently used entries go first), answers only while its
follower has heard from the feed recently (`max_staleness`), and empties
itself when the feed says 410 (it then starts again from the latest
revision) or cannot be read.

A decision is cached only if it was taken at or after the feed position the
follower has reached: an older one might miss a change already applied.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .client import AuthzError, ChangesGone, Decision, Question

if TYPE_CHECKING:
    from .client import AuthzClient

log = logging.getLogger("authz_client.cache")


class DecisionCache:
    def __init__(
        self,
        max_entries: int = 10_000,
        *,
        wait: float = 10.0,
        max_staleness: float | None = None,
        retry_seconds: float = 1.0,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self.wait = wait
        self.max_staleness = max_staleness if max_staleness is not None else wait + 5.0
        self.retry_seconds = retry_seconds
        self._entries: OrderedDict[Question, Decision] = OrderedDict()
        self._lock = threading.Lock()
        self._position: int | None = None  # every change up to it is applied
        self._heard_at = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- answers -----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def position(self) -> int | None:
        return self._position

    def usable(self) -> bool:
        """Following the feed, and heard from it within max_staleness."""
        return self._position is not None and time.monotonic() - self._heard_at < self.max_staleness

    def get(self, question: Question, at_least: int | None = None) -> Decision | None:
        if not self.usable():
            return None
        with self._lock:
            decision = self._entries.get(question)
            if decision is None or (decision.revision or 0) < (at_least or 0):
                return None
            self._entries.move_to_end(question)
        return replace(decision, cached=True)

    def put(self, question: Question, decision: Decision) -> None:
        with self._lock:
            position = self._position
            if position is None or decision.revision is None or decision.revision < position:
                return
            self._entries[question] = decision
            self._entries.move_to_end(question)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    # --- the feed ----------------------------------------------------------------

    def apply(self, page: Mapping[str, Any]) -> None:
        """Drop what a page of the change feed names, and move the position."""
        with self._lock:
            for entry in page.get("revisions", ()):
                revision = int(entry["revision"])
                for change in entry.get("changes", ()):
                    self._invalidate(revision, change)
            self._position = int(page["next_after_revision"])
            self._heard_at = time.monotonic()

    def _invalidate(self, revision: int, change: Mapping[str, Any]) -> None:
        kind = change.get("kind")
        user, structure = change.get("user_id"), change.get("structure_id")

        def concerned(q: Question) -> bool:
            if kind == "user":
                return q.user_id == user
            if kind == "structure":
                return q.structure_id == structure
            if kind == "membership":
                return q.user_id == user and q.structure_id == structure
            return True  # policy, all, or a kind this client does not know

        stale = [
            q for q, d in self._entries.items() if (d.revision or 0) < revision and concerned(q)
        ]
        for q in stale:
            del self._entries[q]

    def follow(self, client: AuthzClient) -> None:
        """Start following the feed in a daemon thread (once)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(client,), name="authz-change-feed", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _restart(self) -> None:
        with self._lock:
            self._entries.clear()
            self._position = None

    def _run(self, client: AuthzClient) -> None:
        while not self._stop.is_set():
            try:
                if self._position is None:
                    start = client.changes(None)
                    self._restart()
                    self.apply(start)
                    continue
                self.apply(client.changes(self._position, wait=self.wait))
            except ChangesGone:
                log.warning("change feed: the log no longer reaches us; cache emptied")
                self._restart()
            except (AuthzError, Exception) as exc:  # noqa: BLE001 - the thread must live on
                log.warning("change feed unreadable (%s); cache emptied", exc)
                self._restart()
                self._stop.wait(self.retry_seconds)
