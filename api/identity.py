"""Who is calling. Every route requires a valid bearer token unless its view is
marked @public: the default is deny, decided before any view runs."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, request
from sqlalchemy.orm import Session

from authz.engine.checks import Caller
from authz.engine.decisions import answering_since, done_answering
from authz.errors import Forbidden, Unauthenticated
from authz.identities import Identity
from authz.runtime import Runtime, done_serving, serving_request
from authz.security import digest
from authz.workflows import accounts, clients
from models import User, utcnow

# Blueprints whose routes are public: the OpenAPI document and its docs page;
# /metrics applies AUTHZ_METRICS_ACCESS itself (api/observe.py), and the console
# authenticates by its own session cookie and denies by default itself
# (api/console/web.py: load_session), never by bearer token.
PUBLIC_BLUEPRINTS = {"api-docs", "docs_assets", "metrics", "console"}
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


PUBLIC = "_authz_public"
FOR_CLIENTS = "_authz_clients"


def public(view: Any) -> Any:
    """Mark a view (function, MethodView class or method) as open to anonymous callers."""
    setattr(view, PUBLIC, True)
    return view


def for_clients(view: Any) -> Any:
    """Mark a view that client applications (API keys) may call, besides people."""
    setattr(view, FOR_CLIENTS, True)
    return view


def has_mark(view: Any, method: str, mark: str) -> bool:
    """Whether `view` (a view function, a MethodView class or the view Flask made
    of one) carries `mark` for `method`: on the class or on its method. Read
    here when a request comes in, and by api/blueprint.py to document it."""
    cls = view if isinstance(view, type) else getattr(view, "view_class", None)
    if cls is not None:
        handler = getattr(cls, method.lower(), None)
        return bool(getattr(cls, mark, False) or getattr(handler, mark, False))
    return bool(getattr(view, mark, False))


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["authz"]
    return rt


def db() -> Session:
    """The request's session (opened on first use, closed when the request ends)."""
    if "db_session" not in g:
        g.db_session = runtime().sessions()
    session: Session = g.db_session
    return session


def caller() -> Caller:
    """The person or client application calling (the view accepts clients);
    ids only: no database access."""
    if g.get("client_id") is not None:
        return Caller(client_id=g.client_id)
    if g.get("user_id") is None:  # only reachable from a public view
        raise Unauthenticated("Log in first.")
    return Caller(user_id=g.user_id)


def current_user() -> User:
    """The calling person, loaded in the request's session (the one workflows
    write with) on first use."""
    user: User | None = g.get("user")
    if user is None:
        user = db().get(User, g.user_id) if g.get("user_id") is not None else None
        if user is None or user.status != "active":  # only from a public view, or gone
            raise Unauthenticated("Log in first.")
        g.user = user
    return user


def _marked(mark: str) -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    return has_mark(view, request.method, mark)


def _is_public() -> bool:
    return _outside_the_api() or _marked(PUBLIC)


def _outside_the_api() -> bool:
    """Routes that never read a bearer credential: the blueprints that apply
    their own access rules, the probes and the AuthZEN metadata document (read
    by anyone, credentials or not, as a discovery document is), and paths with
    no route (Flask answers 404 / 405)."""
    if request.blueprint in PUBLIC_BLUEPRINTS or request.blueprint == "health":
        return True
    if request.path.startswith("/.well-known/"):
        return True
    return current_app.view_functions.get(request.endpoint or "") is None


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _resolve(token: str) -> Identity | None:
    """Who `token` (a bearer token or an API key) is: from this process's cache
    when no credential or account changed since it was resolved (the identity
    revision, read in the revision poll the request's decisions then reuse),
    else from its rows with a read-only session of its own (on SQLite it takes
    no write lock). Raises Unavailable (the database cannot be read),
    TooManyAttempts (an API key's secret checked from a locked-out address)."""
    rt = runtime()
    fingerprint = digest(token)
    revision = rt.decider.identity_revision()
    found = rt.identities.get(fingerprint, revision, utcnow())
    if found is not None:
        return found
    with rt.read_sessions() as session:
        if token.startswith(clients.KEY_PREFIX):
            client = clients.authenticate_client(session, rt, token, request.remote_addr)
            found = Identity(client_id=client.id) if client is not None else None
        else:
            resolved = accounts.authenticate(session, token)
            if resolved is not None:
                user, row = resolved
                found = Identity(user_id=user.id, token_id=row.id, expires_at=row.expires_at)
    if found is not None:
        rt.identities.put(fingerprint, revision, found)
    return found


def _authenticate() -> None:
    """Identify the caller, keeping ids only: a decision route never opens the
    write session at all."""
    g.user = g.user_id = g.token_id = g.client_id = None
    token = _bearer()
    if token is not None:
        found = _resolve(token)
        if found is not None:
            g.user_id, g.token_id, g.client_id = found.user_id, found.token_id, found.client_id
    if g.user_id is None and g.client_id is None and (token is not None or not _is_public()):
        if token is not None and _outside_the_api():
            return  # the documentation, /metrics, the console and unknown paths
        # A credential that does not resolve is refused on a public route too
        # (RFC 6750's invalid_token): a caller that believes it acts as someone
        # must learn it does not, rather than be served as anonymous.
        raise Unauthenticated(
            "A valid bearer token or API key is required.",
            code="unauthenticated" if token is None else "invalid_token",
        )
    if g.client_id is not None and not _marked(FOR_CLIENTS) and not _is_public():
        raise Forbidden(
            "Client applications may only ask for decisions.", code="client_not_allowed"
        )


def _request_id() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if REQUEST_ID_RE.match(incoming) else str(uuid.uuid4())


def _echo_request_id(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id") or str(uuid.uuid4())
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def _arrived() -> None:
    """The request arrived now: a revision poll started from now on may serve
    its authentication and decisions alike (authz.engine.decisions.answering_since)."""
    g.arrival_token = answering_since(time.monotonic())


def _done(_exc: BaseException | None) -> None:
    token = g.pop("arrival_token", None)
    if token is not None:
        done_answering(token)


def _links_from_request() -> None:
    """Links built for this request may use its base URL when its host is trusted
    (authz.runtime.serving_request)."""
    g.link_base_token = serving_request(
        runtime().settings, base_url=lambda: request.url_root, host=lambda: request.host
    )


def _forget_links(_exc: BaseException | None) -> None:
    token = g.pop("link_base_token", None)
    if token is not None:
        done_serving(token)


def register(app: Flask) -> None:
    hooks: list[Callable[[], None]] = [_arrived, _links_from_request, _request_id, _authenticate]
    for hook in hooks:
        app.before_request(hook)
    app.after_request(_echo_request_id)
    app.teardown_request(_close_session)
    app.teardown_request(_forget_links)
    app.teardown_request(_done)
