"""What every console page shares: the session cookie, the CSRF token, the
security headers, the language, and errors as HTML pages.

- The session is a row of `console_sessions` (authz/workflows/sessions.py);
  the cookie carries its random value: HttpOnly, SameSite=Strict, Secure (and
  named `__Host-…`) when the request came over https, Path=/console.
- CSRF: every form carries a token derived from a secret only the browser's
  cookie holds (the session's value once logged in, a random pre-session
  value before): sha256("csrf:" + value). A POST without the right token is
  refused (403 page) before its view runs. SameSite=Strict is the second wall.
- Headers: a Content-Security-Policy without inline script or style
  (`script-src 'self'`), `frame-ancestors 'none'` (and X-Frame-Options DENY),
  no referrer (mailed links carry tokens in their query), no caching.
- Language: `?lang=fr|en` (kept in a cookie), else the browser's
  Accept-Language, else French (api/console/i18n.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as AnyResponse

from authz import errors as domain
from authz.workflows import sessions
from authz.workflows.records import committed_revision
from models import ID_MAX

from ..errors import STATUS_OF
from ..identity import db, runtime
from ..revisions import written_revision
from . import i18n

SESSION_COOKIE = "authz_console"
PRE_SESSION_COOKIE = "authz_console_pre"
LANG_COOKIE = "authz_console_lang"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf_token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)

# Views that need no session (log-in, mailed links, forgot password, assets).
OPEN = "_console_open"


def open_page(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a console view as reachable without a session."""
    setattr(view, OPEN, True)
    return view


def _secure() -> bool:
    return request.is_secure


def cookie_name(base: str) -> str:
    """`__Host-` prefixed over https: the browser then refuses it without
    Secure, from another path or set by a sibling domain."""
    return f"__Host-{base}" if _secure() else base


def _set_cookie(response: AnyResponse, base: str, value: str, *, max_age: int | None) -> None:
    # __Host- cookies must have Path=/; the plain one is kept to /console.
    response.set_cookie(
        cookie_name(base),
        value,
        max_age=max_age,
        path="/" if _secure() else COOKIE_PATH,
        secure=_secure(),
        httponly=True,
        samesite="Strict",
    )


def _delete_cookie(response: AnyResponse, base: str) -> None:
    response.delete_cookie(
        cookie_name(base),
        path="/" if _secure() else COOKIE_PATH,
        secure=_secure(),
        httponly=True,
        samesite="Strict",
    )


def csrf_for(secret: str) -> str:
    return hashlib.sha256(f"csrf:{secret}".encode()).hexdigest()


def load_session() -> AnyResponse | None:
    """before_request of the console: who is logged in (the cookie only: a
    bearer token means nothing here), the language, and the CSRF check of a
    POST. A view not marked open_page without a live session redirects to the
    log-in page."""
    g.user_id = g.client_id = g.token_id = None
    g.user = None
    g.console_session_id = None
    g.lang = i18n.choose(
        request.args.get("lang") or request.cookies.get(LANG_COOKIE),
        request.accept_languages.best_match(i18n.LANGUAGES),
    )
    token = request.cookies.get(cookie_name(SESSION_COOKIE))
    if token:
        found = sessions.resume(db(), runtime(), token)
        if found is not None:
            g.user, row = found
            g.user_id, g.console_session_id = g.user.id, row.id
    g.csrf_secret = (
        token if g.console_session_id else request.cookies.get(cookie_name(PRE_SESSION_COOKIE))
    )
    if not g.csrf_secret:
        g.csrf_secret = g.new_pre_session = secrets.token_urlsafe(32)
    if request.method == "POST":
        sent = request.form.get(CSRF_FIELD, "")
        if g.get("new_pre_session") or not hmac.compare_digest(sent, csrf_for(g.csrf_secret)):
            abort(
                Response(
                    page(
                        "error.html",
                        code="csrf_refused",
                        detail=i18n.t(
                            "This form expired or did not come from this site. "
                            "Reload the page and try again."
                        ),
                    ),
                    403,
                )
            )
    view = current_app.view_functions.get(request.endpoint or "")
    is_open = getattr(view, OPEN, False) or request.endpoint == "console.static"
    if g.console_session_id is None and not is_open:
        return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
    return None


def finish(response: Response) -> Response:
    """after_request of the console: cookies and security headers; a page
    whose form changed rights answers the revision it committed in the
    Authz-Revision header, as the API's writes do (api/revisions.py)."""
    db_session = g.get("db_session")
    if db_session is not None and committed_revision(db_session) is not None:
        g.authz_revision = written_revision()
    if g.get("new_pre_session"):
        _set_cookie(response, PRE_SESSION_COOKIE, g.new_pre_session, max_age=None)
    if request.args.get("lang") in i18n.LANGUAGES:
        _set_cookie(response, LANG_COOKIE, request.args["lang"], max_age=365 * 86400)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def log_in_cookie(response: AnyResponse, token: str) -> AnyResponse:
    _set_cookie(response, SESSION_COOKIE, token, max_age=None)
    _delete_cookie(response, PRE_SESSION_COOKIE)
    return response


def log_out_cookie(response: AnyResponse) -> AnyResponse:
    _delete_cookie(response, SESSION_COOKIE)
    return response


def page(template: str, **context: Any) -> str:
    """Render a console template with what every page needs."""
    return render_template(f"console/{template}", **context)


def csrf_input() -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(
        CSRF_FIELD, csrf_for(g.csrf_secret)
    )


def template_globals() -> dict[str, Any]:
    return {
        "t": i18n.t,
        "csrf_input": csrf_input,
        "lang": g.get("lang", i18n.DEFAULT),
        "me": g.get("user"),
    }


def handle_domain_error(error: domain.DomainError) -> Response:
    """A domain error on a console page: an HTML page with the same status as
    the API would give (api/errors.py's table), its code and detail."""
    status = next((STATUS_OF[c] for c in type(error).__mro__ if c in STATUS_OF), 500)
    if status == 404:
        body = page("error.html", code="not_found", detail=i18n.t("Not found."))
    else:
        body = page(
            "error.html", code=error.code, detail=error.detail, errors=error.extra.get("errors")
        )
    response = Response(body, status=status, mimetype="text/html")
    if isinstance(error, domain.TooManyAttempts):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def handle_http_error(error: Any) -> tuple[str, int]:
    status = getattr(error, "code", None) or 500
    detail = i18n.t("Not found.") if status == 404 else getattr(error, "description", "")
    return page("error.html", code=str(status), detail=detail), status


def form_ids(name: str) -> list[int]:
    """The checked ids of a multi-select (bulk) field; bad values are dropped."""
    values = request.form.getlist(name)
    return [int(v) for v in values if v.isdigit() and 0 < int(v) < ID_MAX]


def done(endpoint: str, notice: str, **values: Any) -> AnyResponse:
    """Redirect after a successful POST (the page shows `notice`)."""
    return redirect(url_for(endpoint, done=notice, **values))


STATIC = Path(__file__).parent.parent / "static" / "console"

# The console's blueprint: every page module (account, manager, reviewer)
# adds its routes to it; api/console/__init__.py registers it on the app.
blp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    static_folder=str(STATIC),
    static_url_path="/assets",
)
blp.before_request(load_session)
blp.after_request(finish)
blp.context_processor(template_globals)
blp.register_error_handler(domain.DomainError, handle_domain_error)
blp.register_error_handler(HTTPException, handle_http_error)
