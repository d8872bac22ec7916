"""The service's gunicorn worker (api/gunicorn_worker.py) shares a burst of
new connections with the other workers: after taking one while it holds more
connections than threads, it stops accepting for ACCEPT_PAUSE_SECONDS, and
takes up accepting again once the pause is over. (Refusals answered as
problems: tests/test_input_hardening.py.)"""

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

from api.gunicorn_worker import ACCEPT_PAUSE_SECONDS, ProblemThreadWorker


@pytest.fixture
def worker() -> Iterator[tuple[ProblemThreadWorker, socket.socket, list[Any]]]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    cfg = Config()
    cfg.set("threads", 2)
    app: Any = None  # the worker never loads it here
    w = ProblemThreadWorker(1, os.getpid(), [listener], app, 30, cfg, Logger(cfg))
    w.poller = selectors.DefaultSelector()
    taken: list[Any] = []
    w.enqueue_req = taken.append  # type: ignore[method-assign,assignment]  # no thread pool
    clients: list[socket.socket] = []
    try:
        yield w, listener, clients
    finally:
        for conn in taken:
            conn.sock.close()
        for client in clients:
            client.close()
        w.poller.close()
        listener.close()


def connect(listener: socket.socket, clients: list[socket.socket]) -> None:
    clients.append(socket.create_connection(listener.getsockname()))
    time.sleep(0.01)  # in the listener's queue


def registered(w: ProblemThreadWorker, listener: socket.socket) -> bool:
    return listener in [key.fileobj for key in w.poller.get_map().values()]


def test_a_worker_with_more_connections_than_threads_pauses_accepting(worker):
    w, listener, clients = worker
    w.set_accept_enabled(True)
    for _ in range(2):  # up to as many connections as threads: no pause
        connect(listener, clients)
        w.accept(listener)
        assert registered(w, listener)
    connect(listener, clients)
    w.accept(listener)
    assert w.nr_conns == 3
    assert not registered(w, listener), "the next connection is left to another worker"
    w.set_accept_enabled(True)  # what gunicorn's loop asks on its next turn
    assert not registered(w, listener), "still paused"
    started = time.monotonic()
    w.wait_for_and_dispatch_events(1.0)
    assert time.monotonic() - started < 0.5, "back to the loop when the pause ends"
    time.sleep(ACCEPT_PAUSE_SECONDS)
    w.set_accept_enabled(True)
    assert registered(w, listener), "accepting again after the pause"
