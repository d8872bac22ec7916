"""`authz serve`: the HTTP API under gunicorn, in this process."""

from __future__ import annotations

import functools
import gc
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from gunicorn.app.base import Application, BaseApplication

from authz import logs, metrics, tracing
from authz.config import Settings
from authz.errors import Invalid

from .common import runtime

if TYPE_CHECKING:
    from flask import Flask

# Method and path only: a query string may carry a token (activation links).
ACCESS_LOG_FORMAT = (
    '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'
)


class ServiceApplication(BaseApplication):
    """gunicorn running api.create_app(). The app is built in each worker, never
    in the master (no preload), so that each worker starts its own mail sender
    thread and database pool; the workers use the settings the master checked.

    gunicorn's settings, each layer overriding the one before: ours (the AUTHZ_*
    settings bind, workers, threads, log level, and the fixed ones below); a
    gunicorn configuration file (`--config`, AUTHZ_GUNICORN_CONFIG, or a
    --config inside GUNICORN_CMD_ARGS); GUNICORN_CMD_ARGS; the options given to
    `authz serve`. Raises Invalid for a setting gunicorn refuses."""

    def __init__(
        self,
        options: dict[str, Any],
        *,
        settings: Settings | None = None,
        config_file: str | None = None,
        overrides: dict[str, Any] | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.options = options
        self.settings = settings
        self.config_file = config_file
        self.overrides = overrides or {}
        self.environ = os.environ if environ is None else environ
        super().__init__()

    def do_load_config(self) -> None:
        # gunicorn's own version prints and exits on any error; let ours through.
        self.load_default_config()
        self.load_config()
        self.cfg.validate()

    def _set(self, source: str, key: str, value: Any) -> None:
        try:
            self.cfg.set(key.lower(), value)
        except (TypeError, ValueError) as exc:
            raise Invalid(f"{source}: {key}: {exc}") from None

    def load_config(self) -> None:
        for key, value in self.options.items():
            self._set("authz serve", key, value)
        parser = self.cfg.parser()

        def refuse(message: str) -> NoReturn:
            raise Invalid(f"GUNICORN_CMD_ARGS: {message}")

        # argparse would exit; the parser is gunicorn's, so its method is replaced.
        parser.error = refuse  # type: ignore[method-assign]
        env_args = parser.parse_args(shlex.split(self.environ.get("GUNICORN_CMD_ARGS", "")))
        config_file = self.config_file or env_args.config
        if config_file:
            if not Path(config_file).is_file():
                raise Invalid(f"gunicorn configuration file {config_file!r} does not exist")
            # gunicorn's own reading of the file (a Python module): a method of its
            # Application, which this BaseApplication is not. Unknown names are ignored.
            namespace = Application.get_config_from_filename(self, config_file)  # type: ignore[arg-type]
            for key, value in namespace.items():
                if key in self.cfg.settings:
                    self._set(config_file, key, value)
        for key, value in vars(env_args).items():
            if value is not None and key not in ("args", "config"):
                self._set("GUNICORN_CMD_ARGS", key, value)
        for key, value in self.overrides.items():
            self._set("authz serve", key, value)
        if self.cfg.preload_app:
            raise Invalid(
                "preload_app is not supported: each worker builds its own app "
                "(database pool, mail sender thread)"
            )

    # gunicorn's stubs type start_response without the exc_info argument that
    # PEP 3333 (and Flask) give it, so no WSGI application matches them.
    def load(self) -> Flask:  # type: ignore[override]
        from api import create_app  # noqa: PLC0415 - the web stack only where it serves

        return create_app(self.settings)


@contextmanager
def metrics_directory() -> Iterator[str]:
    """A fresh folder for the workers' metrics (prometheus-client's multiprocess
    mode), named by PROMETHEUS_MULTIPROC_DIR for the workers forked while it is
    open, removed afterwards: values never outlive the server that counted them.
    Set before anything imports prometheus_client (authz/metrics.py)."""
    directory = tempfile.mkdtemp(prefix="authz-metrics-")
    previous = os.environ.get(metrics.MULTIPROC_ENV)
    os.environ[metrics.MULTIPROC_ENV] = directory
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if previous is None:
            os.environ.pop(metrics.MULTIPROC_ENV, None)
        else:
            os.environ[metrics.MULTIPROC_ENV] = previous


def _worker_exited(directory: str, _server: Any, worker: Any) -> None:
    """gunicorn's child_exit: the worker's live gauges stop counting, and its
    slot in the shared connection counts is free (api/gunicorn_worker.py)."""
    from api import gunicorn_worker  # noqa: PLC0415 - see ServiceApplication.load

    metrics.mark_dead(worker.pid, directory)
    gunicorn_worker.LOADS.release(worker)


def _worker_forking(_server: Any, worker: Any) -> None:
    """gunicorn's pre_fork, in the master: the worker's slot in the shared
    connection counts (api/gunicorn_worker.py, Loads)."""
    from api import gunicorn_worker  # noqa: PLC0415 - see ServiceApplication.load

    gunicorn_worker.LOADS.assign(worker)


def _worker_stopping(_worker: Any) -> None:
    """gunicorn's worker_exit, in the worker: its last counts written (the
    hot path's are written a second at a time, authz/metrics.py)."""
    metrics.flush()


def _worker_started(_server: Any, _worker: Any) -> None:
    """gunicorn's post_fork: tracing (when configured) set up in the worker,
    never in the master: its exporter's thread would not survive the fork."""
    tracing.configure()


@click.command("serve")
@click.option(
    "--bind",
    metavar="HOST:PORT",
    help="Address to listen on  [default: AUTHZ_BIND, 127.0.0.1:8000]",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Worker processes  [default: AUTHZ_WORKERS, 2]",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Threads per worker (gthread: keep-alive connections, and a slow request "
    "does not hold the whole worker)  [default: AUTHZ_THREADS, 4]",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="gunicorn configuration file (Python)  [default: AUTHZ_GUNICORN_CONFIG]",
)
def serve(
    bind: str | None, workers: int | None, threads: int | None, config_file: str | None
) -> None:
    """Serve the HTTP API with gunicorn (access log on stdout), in this process:
    run as a container's command, it is PID 1 and gets the stop signal.
    gunicorn's settings also come from a configuration file and from
    GUNICORN_CMD_ARGS (docs/operations.md). Refuses to start unless the
    database schema is one this release runs on; never migrates. The workers'
    metrics live in a temporary folder of this start (GET /metrics)."""
    with metrics_directory() as directory:
        with runtime() as rt:
            settings = rt.settings
        _serve(settings, directory, bind, workers, threads, config_file)


def _serve(
    settings: Settings,
    directory: str,
    bind: str | None,
    workers: int | None,
    threads: int | None,
    config_file: str | None,
) -> None:
    given = {"bind": bind, "workers": workers, "threads": threads}
    logconfig = logs.gunicorn_logconfig(settings.log_format, settings.log_level)
    # What the master holds now (the modules the workers use too) stays shared
    # with the workers it forks: out of the cyclic collector's sight, a worker's
    # collections do not write to those objects' pages (Python's gc.freeze
    # documentation: the pre-fork server recipe): 46 MB less in all for an
    # instance of 2 workers (docs/performance.md, "Memory and start-up").
    gc.collect()
    gc.freeze()
    ServiceApplication(
        {
            "bind": [address.strip() for address in settings.bind.split(",")],
            "workers": settings.workers,
            "threads": settings.threads,
            "preload_app": False,
            "proc_name": "authz",
            "worker_class": "api.gunicorn_worker.ProblemThreadWorker",  # gthread, problems
            "keepalive": 5,
            # No runtime control socket: it is not needed, and two servers would share it.
            "control_socket_disable": True,
            # JSON logs: the workers write one record per request (authz.access).
            "accesslog": "-" if logconfig is None else None,
            "errorlog": "-",
            "access_log_format": ACCESS_LOG_FORMAT,
            "loglevel": settings.log_level.lower(),
            **({"logconfig_dict": logconfig} if logconfig else {}),
            "child_exit": functools.partial(_worker_exited, directory),
            "post_fork": _worker_started,
            "pre_fork": _worker_forking,
            "worker_exit": lambda _server, worker: _worker_stopping(worker),
        },
        settings=settings,
        config_file=config_file or settings.gunicorn_config or None,
        overrides={key: value for key, value in given.items() if value is not None},
    ).run()
