"""Where compact index snapshots (compact.py) are kept, so that the workers and
instances of one machine map the same file instead of each loading the tables.

A snapshot file is named by the database (a hash of its URL without the
password), the revision it was built at, and that revision's fingerprint (its
change-log rows, hashed: compact.fingerprint_of). A process that needs an index:

1. reads the latest revision, then looks in the folder for the newest snapshot
   of this database at or below it whose fingerprint the database still
   confirms (a database restored from an older backup, or recreated, has other
   rows at that revision, or none): it maps that file and applies the changes
   logged since (Decider), or
2. builds one — under an exclusive lock on the folder, so that workers
   starting together build it once; the others wait, then map it — and writes
   it atomically (a temporary file, then a rename).

Files are only ever created whole and never changed; a process keeps mapping
the file it started with after a newer one replaces it (the old one is
unlinked once two newer ones exist: its pages stay until the last process
lets go of it).

The folder is trusted with decisions: whoever can write into it can forge
facts. It must belong to the service's user and be closed to everyone else
(0700, as it is created); a folder or file that is not is refused, and the
index is then built in the process's own memory (logged as an error).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import logging
import mmap
import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from models import PolicyChange

from .compact import Snapshot, SnapshotError, build, fingerprint_of

log = logging.getLogger("authz.index")

# How many snapshot files of one database are kept (the newest).
KEEP = 2
# A temporary file this old is a build that died: removed.
STALE_TEMPORARY_SECONDS = 3600
# A child building a snapshot (SnapshotStore.rebuild) is given this long, and
# exits with NO_FINGERPRINT when no change-log row confirms its revision.
CHILD_TIMEOUT_SECONDS = 3600
NO_FINGERPRINT = 3


def database_key(url: str) -> str:
    """A short name of the database (its URL without the password, hashed)."""
    safe = make_url(url).render_as_string(hide_password=True)
    return hashlib.sha256(safe.encode()).hexdigest()[:12]


def revision_fingerprint(session: Session, revision: int) -> str | None:
    """The fingerprint of `revision` in this database; None when its change-log
    rows are gone (pruned) or it has none (revision 0): nothing to confirm a
    snapshot with."""
    rows = session.execute(
        select(
            PolicyChange.id,
            PolicyChange.scope,
            PolicyChange.a,
            PolicyChange.b,
            PolicyChange.created_at,
        ).where(PolicyChange.revision == revision)
    ).all()
    if not rows:
        return None
    return fingerprint_of([tuple(r) for r in rows])


class SnapshotStore:
    """The snapshot folder of one database, or none (`directory` None: every
    snapshot is built in memory, for this process alone)."""

    def __init__(self, directory: str | Path | None, database_url: str = "") -> None:
        self.directory = Path(directory) if directory else None
        self._url = database_url
        self._prefix = f"index-{database_key(database_url)}-" if database_url else "index-"

    def acquire(self, session: Session, latest: int, *, in_child: bool = False) -> Snapshot:
        """A snapshot at or below `latest` (the revision `session` read), shared
        when the folder allows: an existing one the database confirms, or a new
        one built at `latest` (`in_child`: by a child process, see rebuild;
        the memory a build leaves behind then stays out of this one). Raises
        SnapshotError when it cannot be built."""
        directory = self._usable_directory()
        if directory is None:
            return self.build_in_memory(session, latest)
        found = self._newest_confirmed(session, latest)
        if found is not None:
            return found
        with self._locked(directory):
            # Another process may have built it while this one waited.
            found = self._newest_confirmed(session, latest)
            if found is not None:
                return found
            if in_child and self._url:
                built = self._build_in_child(directory)
                if built is not None:
                    return built
            return self._build_file(session, latest, directory)

    @property
    def shared(self) -> bool:
        """Whether snapshots are files this machine's processes share (a folder
        is set, and it may be used)."""
        return self._usable_directory() is not None

    def find(self, session: Session, latest: int) -> Snapshot | None:
        """The newest snapshot at or below `latest` the database confirms, if
        one is there (nothing is built); release it when done."""
        if self._usable_directory() is None:
            return None
        return self._newest_confirmed(session, latest)

    def rebuild(
        self, session: Session, latest: int, *, newer_than: int, in_child: bool = False
    ) -> Snapshot:
        """A snapshot newer than `newer_than` (the one a process serves from),
        for a process whose own changes grew too many, or whose snapshot the
        log no longer reaches: another process's if one is, else built at
        `latest` — or, `in_child`, by a child process at the revision it reads
        (at least `latest`): a serving process's threads would otherwise wait
        for the interpreter through each long step of the build (a sort of a
        million keys holds it for a second)."""
        directory = self._usable_directory()
        if directory is None:
            return self.build_in_memory(session, latest)
        with self._locked(directory):
            found = self._newest_confirmed(session, latest)
            if found is not None and found.revision > newer_than:
                return found
            if found is not None:
                found.release()
            if in_child and self._url:
                built = self._build_in_child(directory)
                if built is not None:
                    return built
            return self._build_file(session, latest, directory)

    def _build_in_child(self, directory: Path) -> Snapshot | None:
        """Build a snapshot in a child process (`python -m
        authz.engine.snapshots`; this process holds the folder's lock), and map
        it. None when the child found no revision to confirm a file with (it
        is then built here, in memory). Raises SnapshotError if it failed."""
        env = {**os.environ, "AUTHZ_DATABASE_URL": self._url}  # not in argv: ps shows argv
        try:
            result = subprocess.run(  # noqa: S603 - this interpreter, our module, a path
                [sys.executable, "-m", "authz.engine.snapshots", str(directory)],
                env=env,
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SnapshotError(f"the index build process failed: {exc}") from exc
        if result.returncode == NO_FINGERPRINT:
            return None
        name = result.stdout.strip().rsplit("\n", 1)[-1]
        if result.returncode != 0 or not name.startswith(self._prefix):
            raise SnapshotError(
                f"the index build process failed ({result.returncode}): "
                f"{result.stderr.strip()[-500:]}"
            )
        return _map(directory / name)

    def build_in_memory(self, session: Session, latest: int) -> Snapshot:
        out = io.BytesIO()
        build(session, latest, revision_fingerprint(session, latest) or "", out)
        return Snapshot(out.getbuffer().toreadonly())

    # The folder

    def _usable_directory(self) -> Path | None:
        if self.directory is None:
            return None
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _require_private(self.directory, directory=True)
        except (OSError, SnapshotError) as exc:
            log.error(  # noqa: TRY400 - the reason is the message
                "index snapshot folder %s refused (%s): building the index in memory",
                self.directory,
                exc,
            )
            return None
        return self.directory

    @contextlib.contextmanager
    def _locked(self, directory: Path) -> Iterator[None]:
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _files(self, directory: Path) -> list[tuple[int, str, Path]]:
        """(revision, fingerprint prefix, path) of this database's snapshots, newest first."""
        found = []
        for path in directory.glob(f"{self._prefix}*.snap"):
            parts = path.name[len(self._prefix) : -len(".snap")].split("-")
            if len(parts) == 2 and parts[0].isdigit():
                found.append((int(parts[0]), parts[1], path))
        return sorted(found, reverse=True)

    def _newest_confirmed(self, session: Session, latest: int) -> Snapshot | None:
        directory = self.directory
        if directory is None:
            return None
        for revision, short, path in self._files(directory):
            if revision > latest:
                continue  # built after what this session reads: not usable here
            fingerprint = revision_fingerprint(session, revision)
            if fingerprint is None or not fingerprint.startswith(short):
                continue
            try:
                snapshot = _map(path)
            except (OSError, SnapshotError) as exc:
                log.warning("index snapshot %s unusable: %s", path.name, exc)
                continue
            if snapshot.revision == revision and snapshot.fingerprint == fingerprint:
                return snapshot
            snapshot.release()
        return None

    def _build_file(self, session: Session, latest: int, directory: Path) -> Snapshot:
        path = self.write_file(session, latest, directory)
        if path is None:
            # Nothing in the log confirms this revision (none yet, or pruned):
            # a file could not be told apart from another database's later.
            return self.build_in_memory(session, latest)
        return _map(path)

    def write_file(self, session: Session, latest: int, directory: Path) -> Path | None:
        """Build the snapshot at `latest` into the folder (the caller holds its
        lock); its path, or None when no fingerprint confirms `latest`."""
        fingerprint = revision_fingerprint(session, latest)
        if fingerprint is None:
            return None
        started = time.perf_counter()
        name = f"{self._prefix}{latest:012d}-{fingerprint[:16]}.snap"
        with tempfile.NamedTemporaryFile(
            dir=directory, prefix=".building-", suffix=".tmp", delete=False
        ) as tmp:
            try:
                size = build(session, latest, fingerprint, tmp)
                tmp.flush()
                os.fsync(tmp.fileno())
            except BaseException:
                Path(tmp.name).unlink(missing_ok=True)
                raise
        Path(tmp.name).chmod(0o400)
        Path(tmp.name).replace(directory / name)
        log.info(
            "index snapshot at revision %s built: %s (%.1f MB, %.1f s)",
            latest,
            name,
            size / 1e6,
            time.perf_counter() - started,
        )
        self._prune(directory)
        return directory / name

    def _prune(self, directory: Path) -> None:
        for _revision, _short, path in self._files(directory)[KEEP:]:
            path.unlink(missing_ok=True)
        now = time.time()
        for path in directory.glob(".building-*.tmp"):
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > STALE_TEMPORARY_SECONDS:
                    path.unlink()


def _require_private(path: Path, *, directory: bool) -> None:
    """Refuse a folder or file another user owns, or others may write."""
    st = os.lstat(path)
    kind_ok = stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)
    if not kind_ok:
        raise SnapshotError(f"{path} is not a {'folder' if directory else 'regular file'}")
    if st.st_uid != os.geteuid():
        raise SnapshotError(f"{path} belongs to another user")
    if st.st_mode & 0o022:
        raise SnapshotError(f"{path} is writable by others")


def _map(path: Path) -> Snapshot:
    _require_private(path, directory=False)
    with path.open("rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return Snapshot(mapped)


def main(argv: list[str] | None = None) -> int:
    """The child of SnapshotStore.rebuild: build a snapshot of the database of
    AUTHZ_DATABASE_URL (the other AUTHZ_* settings as the service reads them)
    at its latest revision into the folder given, whose lock the parent holds;
    print the file's name."""
    from authz.config import load_settings  # noqa: PLC0415 - the child's own start-up
    from authz.db import make_engine  # noqa: PLC0415
    from models import PolicyRevision  # noqa: PLC0415

    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0])
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    engine = make_engine(settings, for_reads=True)
    try:
        with Session(engine) as session:
            latest = session.scalar(select(PolicyRevision.revision).where(PolicyRevision.id == 1))
            store = SnapshotStore(directory, settings.effective_database_url)
            path = store.write_file(session, int(latest or 0), directory)
    finally:
        engine.dispose()
    if path is None:
        return NO_FINGERPRINT
    print(path.name)  # noqa: T201 - the parent reads it
    return 0


if __name__ == "__main__":
    sys.exit(main())
