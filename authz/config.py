"""Settings: every default in one place, each overridable by an AUTHZ_* variable.

The README lists every setting below with its default. The service, the CLI and
the tests all build their settings with `load_settings()`, so they agree.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

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
    # Folder of the Casbin model, the role / space catalogues and the policy tests
    # (default: the reviewed policies/ shipped with the package).
    policy_dir: str = str(shipped("policies"))
    # Base URL the service is reached at (activation links, AuthZEN discovery).
    public_base_url: str = "http://127.0.0.1:8000"
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
    # Most questions in one POST /v1/checks/batch or /access/v1/evaluations.
    batch_max: int = 1000
    # Reverse proxies in front of the service whose X-Forwarded-For is trusted
    # (0: use the peer address; the per-address log-in limit relies on it).
    proxy_hops: int = 0
    # Log level of the service.
    log_level: str = "INFO"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.var_dir).resolve() / 'authz.db'}"

    @property
    def effective_mail_dir(self) -> Path:
        return Path(self.mail_dir) if self.mail_dir else Path(self.var_dir) / "mail"


ENV_PREFIX = "AUTHZ_"


def _coerce(raw: str, current: Any, name: str) -> Any:
    if isinstance(current, bool):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{ENV_PREFIX}{name.upper()}: expected a boolean, got {raw!r}")
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    return raw


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then AUTHZ_* environment variables, then explicit overrides."""
    environ = os.environ if environ is None else environ
    defaults = Settings()
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = environ.get(ENV_PREFIX + f.name.upper())
        if raw is not None:
            values[f.name] = _coerce(raw, getattr(defaults, f.name), f.name)
    known = {f.name for f in dataclasses.fields(Settings)}
    for key, value in (overrides or {}).items():
        if key not in known:
            raise KeyError(f"unknown setting {key!r}")
        values[key] = value
    return dataclasses.replace(defaults, **values)


def settings_table() -> list[tuple[str, str]]:
    """(variable, default) for every setting, for the README and `authz --help`."""
    defaults = Settings()
    return [
        (ENV_PREFIX + f.name.upper(), repr(getattr(defaults, f.name)))
        for f in dataclasses.fields(Settings)
    ]


__all__ = ["Settings", "load_settings", "settings_table", "shipped", "ROOT", "SHIPPED"]
