"""The compact decision index's snapshots (authz/engine/snapshots.py): shared by
the processes of a machine through one file, confirmed by the database before
use, refused from a folder others may write, replaced in the background
without a stall. The facts themselves are compared with the dict index's on
random worlds in test_differential.py."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete, update

from authz import roles
from authz.engine import decisions as decisions_module
from authz.engine import snapshots as snapshots_module
from authz.engine.decisions import Decider, Question
from authz.review.fixtures import load_world
from authz.runtime import Runtime, build_runtime, close_runtime
from authz.workflows.records import bump_revision
from models import Attachment, PolicyChange, Subscription, User
from tests.support.backend import POSTGRES_URL
from tests.support.index import assert_same_facts, dict_index

WORLD: dict[str, Any] = {
    "structures": {
        "acme": {
            "kind": "private",
            "opened": ["issued_invoices"],
            "services": {"sales": {"active": True}, "legal": {"active": False}},
        },
        "globex": {"kind": "public", "opened": ["issued_invoices"]},
    },
    "users": {
        "sam": {"status": "active"},
        "ada": {"status": "active"},
        "eve": {"status": "inactive"},
    },
    "attachments": [
        {"user": "sam", "structure": "acme", "role": "simple"},
        {"user": "ada", "structure": "acme", "role": "principal"},
        {"user": "ada", "structure": "globex", "role": "secondary"},
        {"user": "eve", "structure": "globex", "role": "simple"},
    ],
    "subscriptions": [
        {"user": "sam", "structure": "acme", "space": "issued_invoices", "level": "modify"},
        {
            "user": "sam",
            "structure": "acme",
            "space": "issued_invoices",
            "level": "consult",
            "service": "sales",
        },
    ],
}


@pytest.fixture
def world(rt: Runtime) -> dict[str, int]:
    """WORLD in the database (one revision naming its keys): ids by name."""
    with rt.sessions.begin() as session:
        loaded = load_world(session, WORLD)
    return {**loaded.users, **loaded.structures}


def _files(rt: Runtime) -> list[Path]:
    directory = rt.settings.effective_index_dir
    assert directory is not None
    return sorted(directory.glob("index-*.snap"))


def _questions(ids: dict[str, int]) -> list[Question]:
    return [
        Question(ids[u], ids[s], space, action, service)
        for u in ("sam", "ada", "eve")
        for s in ("acme", "globex")
        for space in ("issued_invoices", "received_invoices")
        for action in ("consult", "modify")
        for service in (None, "sales", "legal")
    ]


def _answers(decider: Decider, ids: dict[str, int]) -> list[tuple[bool, str | None]]:
    with decider.reading():
        return [
            (d.allowed, d.rule or d.reason) for d in (decider.decide(q) for q in _questions(ids))
        ]


class Builds:
    """Counts the snapshots built (compact.build), in this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        build = snapshots_module.build

        def counting(*args: Any, **kwargs: Any) -> int:
            self.count += 1
            return build(*args, **kwargs)

        monkeypatch.setattr(snapshots_module, "build", counting)


def test_the_processes_of_a_machine_map_one_snapshot_file(
    rt: Runtime, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt.decider.load()
    assert rt.decider.index.compact
    files = _files(rt)
    assert len(files) == 1
    assert files[0].stat().st_mode & 0o777 == 0o400
    assert rt.settings.effective_index_dir.stat().st_mode & 0o777 == 0o700  # type: ignore[union-attr]
    builds = Builds(monkeypatch)
    other = build_runtime(rt.settings)  # another worker of the same instance
    try:
        other.decider.load()
        assert builds.count == 0, "the second process maps the first one's file"
        assert other.decider.index.snapshot.revision == rt.decider.revision  # type: ignore[union-attr]
        assert _answers(other.decider, world) == _answers(rt.decider, world)
        assert any(allowed for allowed, _ in _answers(other.decider, world))
    finally:
        close_runtime(other)


def test_a_process_starting_later_applies_the_changes_since_the_snapshot(
    rt: Runtime, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt.decider.load()
    with rt.sessions.begin() as session:
        session.get_one(User, world["sam"]).status = "inactive"
        bump_revision(session, users=[world["sam"]])
    builds = Builds(monkeypatch)
    other = build_runtime(rt.settings)
    try:
        other.decider.load()
        assert builds.count == 0
        index = other.decider.index
        assert index.base_revision == other.decider.revision - 1
        assert index.users[world["sam"]] == "inactive"
        assert_same_facts(index, dict_index(other.decider.db_engine))
        rt.decider.ensure_fresh()
        assert _answers(other.decider, world) == _answers(rt.decider, world)
    finally:
        close_runtime(other)


def test_a_snapshot_the_database_no_longer_confirms_is_not_used(
    rt: Runtime, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database restored from an older backup, or recreated, reaches the
    same revision number with other facts: its change-log rows at that
    revision differ, and the file is not used."""
    rt.decider.load()
    revision = rt.decider.revision
    with rt.sessions.begin() as session:
        # What a restore then other writes look like: the revision's log rows
        # are other rows, and the facts differ.
        session.execute(delete(Subscription))
        session.execute(delete(PolicyChange).where(PolicyChange.revision == revision))
        session.add(PolicyChange(revision=revision, scope="all"))
    builds = Builds(monkeypatch)
    other = build_runtime(rt.settings)
    try:
        other.decider.load()
        assert builds.count == 1
        assert other.decider.revision == revision
        assert_same_facts(other.decider.index, dict_index(other.decider.db_engine))
        consult = Question(world["sam"], world["acme"], "issued_invoices", "consult")
        with other.decider.reading():
            assert not other.decider.decide(consult).allowed
    finally:
        close_runtime(other)


def test_a_damaged_snapshot_file_is_passed_over(
    rt: Runtime, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt.decider.load()
    (path,) = _files(rt)
    good = path.read_bytes()
    # Damaged as a disk error or a copy cut short would (files are replaced
    # whole, never written in place: the first process keeps mapping its own).
    for damaged in (good[:-1], good[:-1] + bytes([good[-1] ^ 1]), good[:20]):
        spare = path.with_suffix(".spare")
        spare.write_bytes(damaged)
        spare.replace(path)
        path.chmod(0o400)
        builds = Builds(monkeypatch)
        other = build_runtime(rt.settings)
        try:
            other.decider.load()
            assert builds.count == 1
            assert _answers(other.decider, world) == _answers(rt.decider, world)
        finally:
            close_runtime(other)
    assert path.read_bytes() == good  # built again


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_folder_others_may_write_into_is_refused(
    rt: Runtime, world: dict[str, int], mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever may write the folder could forge facts: its files are not read,
    and the index is built in the process's memory (an error in the log)."""
    directory = rt.settings.effective_index_dir
    assert directory is not None
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(mode)
    with caplog.at_level(logging.ERROR, logger="authz.index"):
        rt.decider.load()
    assert "refused" in caplog.text
    assert rt.decider.index.compact
    assert _files(rt) == []
    assert any(allowed for allowed, _ in _answers(rt.decider, world))


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_folder_or_snapshot_another_user_owns_is_refused(
    rt: Runtime,
    world: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The service's own folder and files only: another user's file is passed
    over (and one built beside it), another user's folder refused whole."""
    rt.decider.load()
    (path,) = _files(rt)
    os.chown(path, 65534, 65534)  # nobody's now, with the same name and bytes
    builds = Builds(monkeypatch)
    other = build_runtime(rt.settings)
    try:
        with caplog.at_level(logging.WARNING, logger="authz.index"):
            other.decider.load()
        assert "belongs to another user" in caplog.text
        assert builds.count == 1
        assert path.stat().st_uid == os.geteuid()  # replaced by the service's own
    finally:
        close_runtime(other)
    directory = rt.settings.effective_index_dir
    assert directory is not None
    os.chown(directory, 65534, 65534)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="authz.index"):
        rt.decider.load()
    assert "refused" in caplog.text and "belongs to another user" in caplog.text
    assert rt.decider.index.compact  # built in memory
    assert any(allowed for allowed, _ in _answers(rt.decider, world))


def test_a_full_reload_keeps_answering_from_the_latest_revision(
    rt: Runtime, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change that names no scope: the new index is made in the background;
    until it is swapped in, each question's keys are read from the database,
    so the answers are the new revision's, without waiting."""
    decider = rt.decider
    decider.load()
    sam_modifies = Question(world["sam"], world["acme"], "issued_invoices", "modify")
    with decider.reading():
        assert decider.decide(sam_modifies).allowed
    release = threading.Event()
    rebuild = decider.snapshots.rebuild

    def held(*args: Any, **kwargs: Any) -> Any:
        assert release.wait(30)
        return rebuild(*args, **kwargs)

    monkeypatch.setattr(decider.snapshots, "rebuild", held)
    with rt.sessions.begin() as session:
        session.execute(delete(Subscription))
        session.execute(update(User).where(User.id == world["ada"]).values(status="inactive"))
        bump_revision(session)  # names nothing: everything may have changed
    try:
        with decider.reading() as revision:
            assert decider.rebuilding, "the new index is being made"
            sam = decider.decide(sam_modifies)
            ada = decider.decide(Question(world["ada"], world["acme"], None, "users.list"))
        assert revision == decider.revision
        assert not sam.allowed
        assert sam.revision == revision
        assert not ada.allowed
        assert "inactive" in (ada.reason or "")
    finally:
        release.set()
    assert decider.wait_rebuilt()
    assert not decider.answering_key_by_key
    assert decider.index.base_revision == decider.revision
    assert_same_facts(decider.index, dict_index(decider.db_engine))
    with decider.reading():
        assert not decider.decide(sam_modifies).allowed


def test_an_enumeration_during_a_full_reload_reads_the_new_revision(
    rt: Runtime, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    decider = rt.decider
    decider.load()
    assert decider.members_of(world["acme"]) == sorted([world["sam"], world["ada"]])
    release = threading.Event()
    rebuild = decider.snapshots.rebuild

    def held(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "authz-index-rebuild":  # the background's only
            assert release.wait(30)
        return rebuild(*args, **kwargs)

    monkeypatch.setattr(decider.snapshots, "rebuild", held)
    with rt.sessions.begin() as session:
        session.execute(delete(Attachment).where(Attachment.user_id == world["sam"]))
        session.execute(delete(Subscription))
        bump_revision(session)
    try:
        decider.ensure_fresh()
        assert decider.answering_key_by_key
        assert decider.members_of(world["acme"]) == [world["ada"]]
        assert decider.structures_of(world["sam"]) == []
        assert decider.structures_of(world["ada"]) == sorted([world["acme"], world["globex"]])
        assert decider.answering_key_by_key, "read key by key, not by loading everything"
    finally:
        release.set()
    assert decider.wait_rebuilt()
    assert decider.members_of(world["acme"]) == [world["ada"]]
    assert decider.structures_of(world["sam"]) == []


def test_a_grown_overlay_moves_to_a_newer_snapshot(
    rt: Runtime, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decisions_module, "OVERLAY_MIN", 2)
    decider = rt.decider
    decider.load()
    first = decider.index.base_revision
    for name in ("sam", "ada", "eve"):
        with rt.sessions.begin() as session:
            session.execute(
                delete(Attachment).where(
                    Attachment.user_id == world[name], Attachment.structure_id == world["globex"]
                )
            )
            bump_revision(session, memberships=[(world[name], world["globex"])])
        decider.ensure_fresh()
    assert decider.wait_rebuilt()
    decider.ensure_fresh()
    assert decider.index.base_revision > first
    assert decider.index.overlay_size < 3
    assert_same_facts(decider.index, dict_index(decider.db_engine))
    assert len(_files(rt)) <= snapshots_module.KEEP


@pytest.mark.parametrize(
    "big",
    [
        pytest.param(
            2**31 + 7,
            marks=pytest.mark.skipif(
                bool(POSTGRES_URL), reason="PostgreSQL ids are 32-bit: none is too large"
            ),
            id="beyond-32-bits",
        ),
        pytest.param(5_000_000, id="too-sparse"),  # tables by id: 5M slots for 4 users
    ],
)
def test_ids_the_compact_index_cannot_hold_load_the_dict_index(
    rt: Runtime, world: dict[str, int], caplog: pytest.LogCaptureFixture, big: int
) -> None:
    rt.decider.load()
    expected = _answers(rt.decider, world)
    with rt.sessions.begin() as session:
        session.add(
            User(
                id=big,
                login_email="big@fixtures.invalid",
                contact_email="big@fixtures.invalid",
                first_name="Big",
                last_name="Id",
                kind="person",
                status="active",
            )
        )
        bump_revision(session, users=[big])
    # A process starting now reads the new user into its overlay over the
    # existing snapshot; one that must build a snapshot cannot pack the id.
    rt.decider.ensure_fresh()
    assert rt.decider.index.compact
    assert rt.decider.index.users[big] == "active"
    for path in _files(rt):
        path.unlink()
    with caplog.at_level(logging.ERROR, logger="authz.decisions"):
        rt.decider.load()
    assert "compact index unavailable" in caplog.text
    assert not rt.decider.index.compact
    with rt.decider.reading():
        d = rt.decider.decide(Question(big, world["acme"], "issued_invoices", "modify"))
    assert not d.allowed
    assert d.reason == "no validated attachment in force covering this scope"
    assert _answers(rt.decider, world) == expected


def test_a_large_index_is_rebuilt_by_a_child_process(
    rt: Runtime, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """From CHILD_BUILD_MIN memberships on, a background rebuild's snapshot is
    built by `python -m authz.engine.snapshots` (so the serving process's
    threads do not wait for the interpreter), then mapped here."""
    decider = rt.decider
    decider.load()
    monkeypatch.setattr(decisions_module, "CHILD_BUILD_MIN", 0)
    builds = Builds(monkeypatch)
    with rt.sessions.begin() as session:
        session.execute(delete(Subscription).where(Subscription.user_id == world["sam"]))
        bump_revision(session)  # a full reload
    decider.ensure_fresh()
    assert decider.wait_rebuilt()
    assert builds.count == 0, "built by the child, not here"
    assert not decider.answering_key_by_key
    assert decider.index.compact
    assert decider.index.base_revision == decider.revision
    assert [p.name for p in _files(rt)][-1].endswith(".snap")
    assert len(_files(rt)) == 2
    assert_same_facts(decider.index, dict_index(decider.db_engine))
    with decider.reading():
        assert not decider.decide(
            Question(world["sam"], world["acme"], "issued_invoices", "modify")
        ).allowed


def test_a_first_start_on_a_machine_answers_at_once_while_the_snapshot_is_built(
    rt: Runtime, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No snapshot of a large index here yet: a serving decider answers at
    once, each question's keys (and an enumeration's memberships) read from
    the database, while the snapshot is built in the background; then it
    serves from the snapshot. The answers are those of a loaded index."""
    monkeypatch.setattr(decisions_module, "CHILD_BUILD_MIN", 0)
    reference = build_runtime(dataclasses.replace(rt.settings, index_dir="none"))
    try:
        reference.decider.load()
        assert not reference.decider.answering_key_by_key, "no shared folder: loaded at once"
        for path in _files(rt):
            path.unlink()
        release = threading.Event()
        rebuild = rt.decider.snapshots.rebuild

        def held(*args: Any, **kwargs: Any) -> Any:
            assert release.wait(30)
            return rebuild(*args, **kwargs)

        monkeypatch.setattr(rt.decider.snapshots, "rebuild", held)
        decider = rt.decider
        try:
            decider.load()
            assert decider.answering_key_by_key and decider.rebuilding
            assert REGISTRY.get_sample_value("authz_index_from_database") == 1
            assert decider.revision == reference.decider.revision
            assert not _files(rt)
            assert _answers(decider, world) == _answers(reference.decider, world)
            for name in ("acme", "globex"):
                assert decider.members_of(world[name]) == reference.decider.members_of(world[name])
            for name in ("sam", "ada", "eve"):
                assert decider.structures_of(world[name]) == reference.decider.structures_of(
                    world[name]
                )
            assert decider.knows_user(world["eve"]) and not decider.knows_user(10**6)
            assert decider.knows_structure(world["acme"]) and not decider.knows_structure(10**6)
            today = roles.today()
            for name in ("acme", "globex"):
                with reference.decider.reading():
                    expected = list(reference.decider.member_rights(world[name], today))
                assert list(decider.member_rights(world[name], today)) == expected
            assert decider.answering_key_by_key
            # An enumeration of the whole service waits for the index instead.
            waited = threading.Thread(target=decider.ready_for_enumeration)
            waited.start()
            waited.join(0.2)
            assert waited.is_alive(), "waits while the snapshot is being built"
        finally:
            release.set()
        waited.join(30)
        assert not waited.is_alive()
        assert decider.wait_rebuilt()
        assert not decider.answering_key_by_key
        assert REGISTRY.get_sample_value("authz_index_from_database") == 0
        assert decider.index.compact and len(_files(rt)) == 1
        assert _answers(decider, world) == _answers(reference.decider, world)
    finally:
        close_runtime(reference)


def test_a_small_index_or_one_with_a_snapshot_is_loaded_at_once(
    rt: Runtime, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    decider = rt.decider
    for path in _files(rt):
        path.unlink()
    decider.load()  # fewer grants than CHILD_BUILD_MIN: built here, now
    assert (decider.answering_key_by_key, decider.index.compact) == (False, True)
    monkeypatch.setattr(decisions_module, "CHILD_BUILD_MIN", 0)
    decider.load()  # a snapshot is there
    assert (decider.answering_key_by_key, decider.index.compact) == (False, True)
