"""The manager console: server-rendered pages under /console/ for people in a
browser (docs/console.md). Every page calls the same authz/ workflows as the
REST API; this package only reads forms, calls them and renders templates
(api/templates/console/). Its own security (session cookie, CSRF, headers) and
its blueprint are api/console/web.py; the pages are account.py (one's own
account and the mailed links), manager.py (the guide's manager pages) and
reviewer.py (the security reviewer's)."""

from __future__ import annotations

from flask import Flask

from . import account, manager, reviewer
from .web import blp

PAGES = (account, manager, reviewer)  # each adds its routes to blp when imported


def register(app: Flask) -> None:
    app.register_blueprint(blp)
