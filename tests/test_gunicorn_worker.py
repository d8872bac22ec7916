"""The service's gunicorn worker (api/gunicorn_worker.py) shares new
connections with the other workers: one that holds more open connections
than the least loaded other worker plus one stops accepting, until another
has taken some or ACCEPT_PAUSE_SECONDS have passed; without the shared counts
(not under `authz serve`) it accepts as gunicorn does. Refusals answered as
problems: tests/test_input_hardening.py."""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from api.gunicorn_worker import ACCEPT_PAUSE_SECONDS, LOADS, Loads, ProblemThreadWorker


class Fixture:
    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        cfg = Config()
        cfg.set("threads", 2)
        app: Any = None  # the worker never loads it here
        self.worker = ProblemThreadWorker(
            1, os.getpid(), [self.listener], app, 30, cfg, Logger(cfg)
        )
        self.worker.poller = selectors.DefaultSelector()
        self.taken: list[Any] = []
        self.worker.enqueue_req = self.taken.append  # type: ignore[method-assign,assignment]
        self.clients: list[socket.socket] = []

    def connect_and_accept(self) -> None:
        self.clients.append(socket.create_connection(self.listener.getsockname()))
        time.sleep(0.01)  # in the listener's queue
        self.worker.accept(self.listener)

    def accepting(self) -> bool:
        keys = self.worker.poller.get_map().values()
        return self.listener in [key.fileobj for key in keys]

    def close(self) -> None:
        for conn in self.taken:
            conn.sock.close()
        for client in self.clients:
            client.close()
        self.worker.poller.close()
        self.listener.close()


@pytest.fixture
def two_workers() -> Iterator[Fixture]:
    """This worker in slot 0 and another, idle, in slot 1."""
    saved = list(LOADS.counts)
    for slot in range(len(saved)):
        LOADS.counts[slot] = -1
    f = Fixture()
    other: Any = type("Other", (), {})()
    LOADS.assign(f.worker)
    LOADS.assign(other)
    assert (f.worker.load_slot, other.load_slot) == (0, 1)
    try:
        yield f
    finally:
        f.close()
        for slot, count in enumerate(saved):
            LOADS.counts[slot] = count


def test_slots_are_assigned_and_freed_by_the_master():
    loads = Loads(4)
    a: Any = type("W", (), {})()
    b: Any = type("W", (), {})()
    loads.assign(a)
    loads.assign(b)
    assert (a.load_slot, b.load_slot) == (0, 1)
    assert loads.least_other(0) == 0
    loads.counts[1] = 5
    assert loads.least_other(0) == 5
    loads.release(b)
    assert loads.least_other(0) is None, "a worker alone has no other to leave room to"
    c: Any = type("W", (), {})()
    loads.assign(c)
    assert c.load_slot == 1, "a freed slot is used again"


def test_a_worker_ahead_of_another_leaves_it_the_next_connection(two_workers):
    f = two_workers
    f.worker.set_accept_enabled(True)
    f.connect_and_accept()
    assert f.accepting(), "1 against 0: still even enough"
    f.connect_and_accept()
    assert not f.accepting(), "2 against 0: the next one is the other worker's"
    assert LOADS.counts[0] == 2
    f.worker.set_accept_enabled(True)  # what gunicorn's loop asks on its next turn
    assert not f.accepting()
    LOADS.counts[1] = 1  # the other worker took one
    f.worker.set_accept_enabled(True)
    assert f.accepting(), "even again: accepting"


def test_the_pause_is_bounded(two_workers):
    f = two_workers
    f.worker.set_accept_enabled(True)
    f.connect_and_accept()
    f.connect_and_accept()
    assert not f.accepting()
    started = time.monotonic()
    f.worker.wait_for_and_dispatch_events(1.0)
    assert time.monotonic() - started < 0.5, "back to the loop while paused"
    time.sleep(ACCEPT_PAUSE_SECONDS)
    f.worker.set_accept_enabled(True)
    assert f.accepting(), "the other worker never took one: accepting all the same"


def test_without_the_masters_counts_a_worker_accepts_as_gunicorn_does():
    f = Fixture()
    try:
        assert f.worker.load_slot is None
        f.worker.set_accept_enabled(True)
        for _ in range(4):
            f.connect_and_accept()
            assert f.accepting()
    finally:
        f.close()
