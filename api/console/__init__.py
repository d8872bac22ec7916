"""The manager console: server-rendered pages under /console/ for people in a
browser (docs/console.md). Every page calls the same authz/ workflows as the
REST API; this package only reads forms, calls them and renders templates
(api/templates/console/). Its own security (session cookie, CSRF, headers) is
api/console/web.py."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask
from werkzeug.exceptions import HTTPException

from authz import errors as domain

from . import web

STATIC = Path(__file__).parent.parent / "static" / "console"

blp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    static_folder=str(STATIC),
    static_url_path="/assets",
)
blp.before_request(web.load_session)
blp.after_request(web.finish)
blp.context_processor(web.template_globals)
blp.register_error_handler(domain.DomainError, web.handle_domain_error)
blp.register_error_handler(HTTPException, web.handle_http_error)


def register(app: Flask) -> None:
    from . import account, manager, reviewer  # noqa: F401  (the routes of blp)

    app.register_blueprint(blp)
