"""Settings: every default in one place, each overridable by an AUTHZ_* variable.

The README lists every setting below with its default. The service, the CLI and
the tests all build their settings with `load_settings()`, so they agree.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# The folder above the authz package: the repository root in a checkout (or an
# editable install); site-packages for an installed wheel, where the files
# below are not.
ROOT = Path(__file__).resolve().parent.parent
# Files the distribution ships: in a wheel, setup.py copies them into
# authz/_shipped/; in a checkout they are the top-level originals.
SHIPPED = ("policies", "migrations", "alembic.ini")


def shipped(name: str) -> Path:
    """Where the shipped file or folder `name` (one of SHIPPED) is: the copy inside
    the installed package if there is one, else the checkout's own."""
    if name not in SHIPPED:
        raise ValueError(f"{name!r} is not shipped with the package")
    installed = Path(str(resources.files("authz"))) / "_shipped" / name
    return installed if installed.exists() else ROOT / name


@dataclass(frozen=True)
class Settings:
    # Where the embedded database, mail files and other local state live.
    var_dir: str = "var"
    # SQLAlchemy URL; empty means a SQLite file `<var_dir>/authz.db`.
    database_url: str = ""
    # PostgreSQL: connections older than this are replaced (seconds; 0: never), so
    # that none outlives a failover, a proxy's idle timeout or a firewall's.
    database_recycle_seconds: int = 1800
    # Folder of the Casbin model, the role / space catalogues and the policy tests
    # (default: the reviewed policies/ shipped with the package).
    policy_dir: str = str(shipped("policies"))
    # Base URL the service is reached at (activation links, AuthZEN discovery).
    # Empty: the discovery document names the URL it was fetched from, and links
    # use the request's host when it is a trusted host (below), else
    # http://127.0.0.1:8000 (docs/decisions.md, "Links in mails").
    public_base_url: str = ""
    # Host names (any port) whose requests may set the base of mailed links when
    # public_base_url is empty; comma-separated. A Host header is the client's.
    trusted_hosts: str = "127.0.0.1,localhost,[::1]"
    # Lifetime of a log-in bearer token, seconds.
    token_ttl_seconds: int = 8 * 3600
    # Lifetime of an activation link, seconds (60 minutes in the guide).
    activation_ttl_seconds: int = 3600
    # Lifetime of a technical user's secret, days (424 in the guide).
    technical_secret_ttl_days: int = 424
    # Brute-force protection: failures allowed per login email in the window...
    login_max_failures: int = 5
    # ...and per client address in the window...
    login_max_failures_per_ip: int = 50
    # ...the window and lock-out duration, seconds.
    login_lockout_seconds: int = 900
    # argon2id cost parameters (RFC 9106 second recommended option by default).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    # Largest accepted request body, bytes (413 above).
    max_body_bytes: int = 1024 * 1024
    # Pagination: default and largest page size.
    page_size: int = 50
    page_size_max: int = 200
    # Outgoing mail. No SMTP host: mails are written as .eml files to mail_dir.
    mail_from: str = "no-reply@authz.localhost"
    mail_dir: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10.0
    # Retry back-off of the outbox: first delay, doubling up to the cap, seconds.
    mail_retry_base_seconds: float = 30.0
    mail_retry_max_seconds: float = 3600.0
    # Deliver the outbox from a background thread of each process.
    mail_background: bool = True
    mail_poll_seconds: float = 5.0
    # Decisions: how long a worker may answer from its index without asking the
    # database whether the policy revision moved (0: ask before every answer).
    decision_check_interval_seconds: float = 0.0
    # PostgreSQL: a revision read serves the checks of the next this many
    # milliseconds, and every transaction that wrote waits as long after its
    # commit before the service goes on (docs/decisions.md, "Revision lease").
    # The same value on every instance; 0: a read before every answer.
    revision_lease_ms: int = 10
    # Where the compact decision index's snapshots are kept, shared by the
    # workers and instances of this machine (authz/engine/snapshots.py): empty
    # for `<var_dir>/index`, `none` to build the index in each process's memory.
    index_dir: str = ""
    # Most questions in one POST /v1/checks/batch or /access/v1/evaluations.
    batch_max: int = 1000
    # Reverse proxies in front of the service whose X-Forwarded-For is trusted
    # (0: use the peer address; the per-address log-in limit relies on it).
    proxy_hops: int = 0
    # Log level of the service.
    log_level: str = "INFO"
    # Log lines: `text` (one readable line each) or `json` (one JSON object per
    # line: time, level, logger, message, request id, caller, route, status,
    # duration; an exception's stack inside its record). docs/operations.md.
    log_format: str = "text"
    # Who may read GET /metrics: `loopback` (callers on 127.0.0.1 / ::1 only),
    # `token` (a bearer token whose SHA-256 is metrics_token_sha256), or `off`.
    metrics_access: str = "loopback"
    # Hex SHA-256 of the metrics bearer token (the token itself is never stored).
    metrics_token_sha256: str = ""
    # Decision log (docs/operations.md): `off`, `sampled` (a share of the
    # decisions, decision_log_sample_rate) or `all`...
    decision_log: str = "off"
    decision_log_sample_rate: float = 0.1
    # ...and every denial whatever the mode (even `off`) when true.
    decision_log_denials: bool = False
    # Records older than this are deleted by `authz maintenance`, days.
    decision_log_retention_days: int = 90
    # Records waiting to be written at most (more are dropped and counted; the
    # writer is woken early when half of it is used), and how often the
    # background writer writes them, seconds.
    decision_log_buffer: int = 100000
    decision_log_flush_seconds: float = 1.0
    # Also write each record as a log line (logger authz.decision_log.records; with
    # AUTHZ_LOG_FORMAT=json one JSON object, member `decision`), for a SIEM.
    decision_log_stream: bool = False
    # `authz serve` (gunicorn): address, worker processes, threads per worker,
    # and a gunicorn configuration file (empty: none). gunicorn's own
    # configuration file, then GUNICORN_CMD_ARGS, then the options of
    # `authz serve` override these (docs/operations.md).
    bind: str = "127.0.0.1:8000"
    workers: int = 2
    threads: int = 4
    gunicorn_config: str = ""
    # Bounded waits on the database (docs/decisions.md, "Bounded waits"): a
    # statement running longer is cancelled (PostgreSQL statement_timeout), ms...
    db_statement_timeout_ms: int = 5000
    # ...a wait for a lock longer than this fails (PostgreSQL lock_timeout;
    # SQLite: how long a writer waits for the write lock), ms...
    db_lock_timeout_ms: int = 2000
    # ...and connecting to PostgreSQL gives up after this, seconds.
    db_connect_timeout_seconds: int = 5
    # /health/ready answers 503 when the database does not answer within this, ms.
    ready_timeout_ms: int = 1000
    # A manager's invitation to join a structure expires after this, days.
    invitation_ttl_days: int = 30
    # The change feed (GET /v1/changes): the longest a caller may wait there for
    # a change (long polling; a waiting caller holds one of the worker's
    # threads), seconds...
    changes_wait_max_seconds: float = 20.0
    # ...and how long the change log is kept, days (`authz maintenance` prunes
    # it; a feed reader or a worker further behind starts again from scratch).
    change_log_retention_days: int = 7
    # Lifetime of a "forgot password" link, seconds (60 minutes, like activation).
    password_reset_ttl_seconds: int = 3600
    # "Forgot password" mails asked per login email in the lock-out window
    # (AUTHZ_LOGIN_LOCKOUT_SECONDS); more are refused with 429, whether or not
    # the address has an account.
    password_reset_max_requests: int = 3
    # The manager console (/console/): a browser session unused for this long
    # ends (seconds); it never lives longer than AUTHZ_TOKEN_TTL_SECONDS.
    console_idle_timeout_seconds: int = 1800

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.var_dir).resolve() / 'authz.db'}"

    @property
    def effective_index_dir(self) -> Path | None:
        if self.index_dir.strip().lower() == "none":
            return None
        return Path(self.index_dir) if self.index_dir else Path(self.var_dir) / "index"

    @property
    def effective_mail_dir(self) -> Path:
        return Path(self.mail_dir) if self.mail_dir else Path(self.var_dir) / "mail"


ENV_PREFIX = "AUTHZ_"
# AUTHZ_* names that are not settings of the service: the test suite's and CI's.
RESERVED_PREFIXES = ("AUTHZ_TEST_", "AUTHZ_CI_")


class SettingError(ValueError):
    """A setting's value is refused. The message is one line: the variable, what
    it accepts, and the value given."""

    def __init__(self, name: str, accepts: str, value: Any) -> None:
        self.variable = ENV_PREFIX + name.upper()
        if name in _SECRETS:
            given = "a value (not shown)"
        else:
            given = repr(
                _PASSWORD_IN_URL.sub(r"\1:***@", value) if name == "database_url" else value
            )
        super().__init__(f"{self.variable}: expected {accepts}, got {given}")


# Never echoed in an error; a database URL is echoed with its password masked.
_SECRETS = frozenset({"smtp_password", "metrics_token_sha256"})
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*):[^@/]*@")


# --- what each setting accepts -----------------------------------------------
# Every setting is checked on start (CLI and create_app) against its type and
# the rule below: (what it accepts, in words; a check of the typed value).

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
METRICS_ACCESS = ("loopback", "token", "off")
DECISION_LOG_MODES = ("off", "sampled", "all")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def _url(value: str, *, empty_ok: bool) -> bool:
    if not value:
        return empty_ok
    parts = urlsplit(value)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not (parts.query or parts.fragment)
    )


def _database_url(value: str) -> bool:
    if not value:
        return True
    try:
        url = make_url(value)
    except ArgumentError:
        return False
    return url.get_backend_name() in ("sqlite", "postgresql")


def _host_names(value: str) -> bool:
    names = [n.strip() for n in value.split(",")]
    return all(n and " " not in n and "/" not in n for n in names) if value.strip() else True


def _binds(value: str) -> bool:
    def one(address: str) -> bool:
        if address.startswith(("unix:", "fd://")):
            return len(address) > 5
        host, _, port = address.rpartition(":")
        return bool(host) and port.isdigit() and 0 <= int(port) <= 65535

    return all(one(a.strip()) for a in value.split(",")) if value.strip() else False


_AT_LEAST_1 = ("an integer >= 1", lambda v: v >= 1)
_POSITIVE = ("a number > 0", lambda v: v > 0)
RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "var_dir": ("a folder path", lambda v: bool(v.strip())),
    "database_url": (
        "empty or a SQLAlchemy URL of SQLite or PostgreSQL, e.g. postgresql+psycopg://user@host/db",
        _database_url,
    ),
    "database_recycle_seconds": ("an integer >= 0 (0: never)", lambda v: v >= 0),
    "policy_dir": ("an existing folder of policy files", lambda v: Path(v).is_dir()),
    "public_base_url": (
        "empty or an http(s) URL without query, e.g. https://authz.example.org",
        lambda v: _url(v, empty_ok=True),
    ),
    "trusted_hosts": (
        "host names separated by commas, e.g. 127.0.0.1,localhost,[::1]",
        _host_names,
    ),
    "token_ttl_seconds": _AT_LEAST_1,
    "activation_ttl_seconds": ("an integer >= 60", lambda v: v >= 60),
    "technical_secret_ttl_days": _AT_LEAST_1,
    "login_max_failures": _AT_LEAST_1,
    "login_max_failures_per_ip": _AT_LEAST_1,
    "login_lockout_seconds": _AT_LEAST_1,
    "argon2_time_cost": _AT_LEAST_1,
    "argon2_memory_kib": ("an integer >= 8", lambda v: v >= 8),
    "argon2_parallelism": ("an integer from 1 to 255", lambda v: 1 <= v <= 255),
    "max_body_bytes": ("an integer >= 1024", lambda v: v >= 1024),
    "page_size": _AT_LEAST_1,
    "page_size_max": _AT_LEAST_1,
    "mail_from": (
        "an e-mail address",
        lambda v: "@" in v and not any(c in v for c in "\r\n"),
    ),
    "mail_dir": ("a folder path (or empty)", lambda _: True),
    "smtp_host": ("a host name (or empty)", lambda v: " " not in v.strip()),
    "smtp_port": ("a port number from 1 to 65535", lambda v: 1 <= v <= 65535),
    "smtp_username": ("any text", lambda _: True),
    "smtp_password": ("any text", lambda _: True),
    "smtp_starttls": ("true or false", lambda _: True),
    "smtp_timeout_seconds": _POSITIVE,
    "mail_retry_base_seconds": _POSITIVE,
    "mail_retry_max_seconds": _POSITIVE,
    "mail_background": ("true or false", lambda _: True),
    "mail_poll_seconds": _POSITIVE,
    "decision_check_interval_seconds": ("a number >= 0", lambda v: v >= 0),
    "revision_lease_ms": ("an integer from 0 to 1000", lambda v: 0 <= v <= 1000),
    "index_dir": ("empty, a folder path, or none", lambda _: True),
    "batch_max": _AT_LEAST_1,
    "proxy_hops": ("an integer >= 0", lambda v: v >= 0),
    "log_level": ("one of " + ", ".join(_LOG_LEVELS), lambda v: v.upper() in _LOG_LEVELS),
    "log_format": ("one of " + ", ".join(LOG_FORMATS), lambda v: v in LOG_FORMATS),
    "metrics_access": ("one of " + ", ".join(METRICS_ACCESS), lambda v: v in METRICS_ACCESS),
    "metrics_token_sha256": (
        "empty or the SHA-256 of the metrics token, 64 lower-case hex digits",
        lambda v: not v or bool(_SHA256_HEX.match(v)),
    ),
    "decision_log": ("one of " + ", ".join(DECISION_LOG_MODES), lambda v: v in DECISION_LOG_MODES),
    "decision_log_sample_rate": ("a number > 0 and <= 1", lambda v: 0 < v <= 1),
    "decision_log_denials": ("true or false", lambda _: True),
    "decision_log_retention_days": _AT_LEAST_1,
    "decision_log_buffer": ("an integer >= 100", lambda v: v >= 100),
    "decision_log_flush_seconds": ("a number from 0.05 to 60", lambda v: 0.05 <= v <= 60),
    "decision_log_stream": ("true or false", lambda _: True),
    "bind": ("HOST:PORT (or unix:PATH), several separated by commas", _binds),
    "workers": _AT_LEAST_1,
    "threads": _AT_LEAST_1,
    "gunicorn_config": (
        "empty or an existing gunicorn configuration file (Python)",
        lambda v: not v or Path(v).is_file(),
    ),
    "db_statement_timeout_ms": ("an integer >= 100 (milliseconds)", lambda v: v >= 100),
    "db_lock_timeout_ms": ("an integer >= 100 (milliseconds)", lambda v: v >= 100),
    "db_connect_timeout_seconds": ("an integer >= 2 (seconds)", lambda v: v >= 2),
    "ready_timeout_ms": ("an integer >= 100 (milliseconds)", lambda v: v >= 100),
    "invitation_ttl_days": _AT_LEAST_1,
    "changes_wait_max_seconds": ("a number from 0 to 300 (seconds)", lambda v: 0 <= v <= 300),
    "change_log_retention_days": _AT_LEAST_1,
    "password_reset_ttl_seconds": ("an integer >= 60", lambda v: v >= 60),
    "password_reset_max_requests": _AT_LEAST_1,
    "console_idle_timeout_seconds": ("an integer >= 60 (seconds)", lambda v: v >= 60),
}
# Settings that must not be smaller than another: (setting, floor setting).
_NOT_BELOW = (
    ("page_size_max", "page_size"),
    ("mail_retry_max_seconds", "mail_retry_base_seconds"),
    ("token_ttl_seconds", "console_idle_timeout_seconds"),
)
_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "text"}


def _typed(name: str, raw: Any, kind: type) -> Any:
    """The value of setting `name` as its type, from an environment string or an
    explicit override. Raises SettingError."""
    rule = RULES[name][0]
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        lowered = str(raw).strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise SettingError(name, "true or false (also 1/0, yes/no, on/off)", raw)
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise SettingError(name, rule, raw)
        try:
            return int(raw.strip()) if isinstance(raw, str) else raw
        except ValueError:
            raise SettingError(name, rule, raw) from None
    if kind is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise SettingError(name, rule, raw)
        try:
            value = float(raw.strip()) if isinstance(raw, str) else float(raw)
        except ValueError:
            raise SettingError(name, rule, raw) from None
        if not math.isfinite(value):
            raise SettingError(name, rule, raw)
        return value
    if not isinstance(raw, str):
        raise SettingError(name, rule, raw)
    return raw


def validate(settings: Settings) -> Settings:
    """Check every setting against its rule. Raises SettingError (one line)."""
    for name, (accepts, check) in RULES.items():
        value = getattr(settings, name)
        if not check(value):
            raise SettingError(name, accepts, value)
    for name, floor in _NOT_BELOW:
        if getattr(settings, name) < getattr(settings, floor):
            accepts = f"a value >= {ENV_PREFIX}{floor.upper()} ({getattr(settings, floor)})"
            raise SettingError(name, accepts, getattr(settings, name))
    if settings.metrics_access == "token" and not settings.metrics_token_sha256:
        raise SettingError(
            "metrics_token_sha256",
            "the SHA-256 of the metrics token when AUTHZ_METRICS_ACCESS is token",
            settings.metrics_token_sha256,
        )
    if settings.argon2_memory_kib < 8 * settings.argon2_parallelism:
        raise SettingError(
            "argon2_memory_kib",
            f"at least 8 KiB per lane of AUTHZ_ARGON2_PARALLELISM ({settings.argon2_parallelism})",
            settings.argon2_memory_kib,
        )
    return settings


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then AUTHZ_* environment variables, then explicit overrides;
    every value checked. Raises SettingError (one line naming the variable and
    what it accepts), or KeyError for an override that is not a setting."""
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    for name in fields:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = raw
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise KeyError(f"unknown setting {key!r}")
        values[key] = value
    kinds = {name: type(getattr(Settings, name)) for name in fields}
    typed = {name: _typed(name, raw, kinds[name]) for name, raw in values.items()}
    settings = validate(dataclasses.replace(Settings(), **typed))
    return dataclasses.replace(settings, log_level=settings.log_level.upper())


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning line per AUTHZ_* variable of `environ` that is not a setting
    (a misspelt name would otherwise be ignored in silence), with the closest
    setting when one is close."""
    environ = os.environ if environ is None else environ
    known = [ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)]
    lines = []
    for variable in sorted(environ):
        if (
            not variable.startswith(ENV_PREFIX)
            or variable in known
            or variable.startswith(RESERVED_PREFIXES)
        ):
            continue
        close = difflib.get_close_matches(variable, known, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"warning: {variable} is not a setting and is ignored{hint}")
    return lines


def settings_table() -> list[tuple[str, str]]:
    """(variable, default) for every setting, for the README and `authz --help`."""
    defaults = Settings()
    return [
        (ENV_PREFIX + f.name.upper(), repr(getattr(defaults, f.name)))
        for f in dataclasses.fields(Settings)
    ]


__all__ = [
    "ROOT",
    "SHIPPED",
    "SettingError",
    "Settings",
    "load_settings",
    "settings_table",
    "shipped",
    "unknown_variables",
    "validate",
]
