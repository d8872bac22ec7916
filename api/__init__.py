"""The HTTP layer: create_app, errors → HTTP, identity, one blueprint per resource."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, send_from_directory
from gunicorn.errors import AppImportError
from werkzeug.middleware.proxy_fix import ProxyFix

from authz import logs, metrics, tracing
from authz.config import SettingError, Settings, load_settings, unknown_variables
from authz.db import schema_status
from authz.mail import MailDispatcher
from authz.runtime import build_runtime, close_runtime, sync_catalogue

from . import (
    auth,
    authzen,
    catalogue,
    changes,
    checks,
    console,
    decision_log,
    errors,
    health,
    history,
    identity,
    invitations,
    lifecycle,
    observe,
    requests,
    reviews,
    revisions,
    structures,
    technical,
    users,
)
from .fastcheck import FastChecks
from .flask_app import App
from .inputs import IdConverter, id_parameter_schema

API_TITLE = "Authorization service"
# Swagger UI 5.x (swagger-ui-dist, vendored: see its VERSION file).
SWAGGER_UI_DIR = Path(__file__).parent / "static" / "swagger-ui"


class StartupError(AppImportError):
    """The service refuses to start: a setting is invalid, or the database schema
    is not one this release runs on. The message is one line; gunicorn prints
    just that (no traceback) and stops instead of restarting the worker."""


def create_app(config: Mapping[str, Any] | Settings | None = None) -> Flask:
    """Build the service. `config`: settings overrides on top of the AUTHZ_*
    environment and the defaults of authz/config.py, or a Settings already loaded
    (by `authz serve`'s master, which also warned about unknown variables).

    Raises StartupError for an invalid setting or an unusable schema."""
    if isinstance(config, Settings):
        settings = config
    else:
        try:
            settings = load_settings(config)
        except SettingError as exc:
            raise StartupError(str(exc)) from None
    logs.configure(settings.log_format, settings.log_level)
    logs.quiet_probes()
    # In this process: under gunicorn the app is built in each worker, after the
    # fork (post_fork configures it too, before anything else in the worker).
    tracing.configure()
    if not isinstance(config, Settings):
        for line in unknown_variables():
            logging.getLogger("authz").warning(line.removeprefix("warning: "))
    rt = build_runtime(settings)
    status = schema_status(rt.engine)
    if not status.usable:
        close_runtime(rt)
        raise StartupError(status.detail)
    sync_catalogue(rt)
    rt.decider.load()
    for engine in {rt.engine, rt.decider.db_engine}:
        metrics.watch_pool(engine)

    app = App(__name__, static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_TITLE=API_TITLE,
        API_VERSION="1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
        API_SPEC_OPTIONS={
            "info": {
                "description": "Who may do what on the structures of an e-invoicing "
                "portal. Errors are application/problem+json."
            },
            "security": [{"bearer": []}],
        },
    )
    app.extensions["authz"] = rt
    app.url_map.converters["id"] = IdConverter
    errors.register(app)
    api = errors.ProblemApi(app)
    api.register_converter(IdConverter, id_parameter_schema)
    api.spec.components.security_scheme(
        "bearer",
        {"type": "http", "scheme": "bearer", "description": "A token from POST /v1/auth/token."},
    )
    identity.register(app)
    revisions.register(app)
    observe.register(app)

    blueprints = [
        health.blp,
        auth.blp,
        structures.blp,
        catalogue.blp,
        checks.blp,
        changes.blp,
        users.blp,
        history.blp,
        authzen.blp,
        lifecycle.blp,
        technical.blp,
        requests.attachment_blp,
        requests.subscription_blp,
        reviews.blp,
        decision_log.blp,
        invitations.blp,
    ]
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    app.register_blueprint(_docs_assets())
    console.register(app)
    app.after_request(_html_headers)

    # Flask's documented way to wrap its WSGI application in middlewares: the
    # single check's fast path (api/fastcheck.py), inside the proxy headers'
    # fix so that it sees the client's address as every route does.
    app.wsgi_app = FastChecks(app)  # type: ignore[method-assign]
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops
        )

    if settings.mail_background:
        rt.dispatcher = MailDispatcher(rt.sessions, settings)
        rt.dispatcher.start()
    return app


def _html_headers(response):
    """Pages outside the console (the /docs page) are not framed either, and
    run only the scripts served here (the console sets its own, stricter CSP)."""
    if response.mimetype == "text/html" and "Content-Security-Policy" not in response.headers:
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
    return response


def _docs_assets() -> Blueprint:
    """Swagger UI's files, served locally (no CDN), with our start-up script."""
    assets = Blueprint("docs_assets", __name__)

    @assets.route("/docs/assets/<path:filename>")
    def asset(filename: str) -> Response:
        return send_from_directory(SWAGGER_UI_DIR, filename)

    return assets
