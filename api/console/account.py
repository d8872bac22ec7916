"""Pages of one's own account: log-in and log-out, the mailed links
(activation, forgot password), and "my page" (my structures, asking for an
attachment or a subscription, invitations, deactivation)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

from flask import g, redirect, request, url_for
from flask.typing import ResponseReturnValue

from authz.errors import Invalid
from authz.workflows import accounts, attachments, invitations, lifecycle, sessions, subscriptions
from authz.workflows import structures as structure_flow
from authz.workflows.access import role_on

from ..identity import db, runtime
from . import i18n, web
from .web import blp, open_page, page


def _safe_next(target: str | None) -> str:
    """Only a path of the console itself (no open redirect)."""
    if (
        target
        and target.startswith("/console/")
        and not urlsplit(target).netloc
        and not target.startswith("//")
    ):
        return target
    return url_for("console.home")


@blp.route("/login", methods=["GET", "POST"])
@open_page
def login() -> ResponseReturnValue:
    if request.method == "GET":
        return page(
            "login.html",
            next=request.args.get("next", ""),
            reactivable_until=_until(request.args.get("until")),
        )
    token, _row = sessions.open_session(
        db(),
        runtime(),
        login_email=request.form.get("login_email", ""),
        password=request.form.get("password", ""),
        address=request.remote_addr,
    )
    return web.log_in_cookie(redirect(_safe_next(request.form.get("next"))), token)


@blp.route("/logout", methods=["POST"])
@open_page
def logout() -> ResponseReturnValue:
    if g.console_session_id is not None:
        sessions.end(db(), runtime(), g.console_session_id)
    return web.log_out_cookie(redirect(url_for("console.login", done="logged_out")))


@blp.route("/signup", methods=["GET", "POST"])
@open_page
def signup() -> ResponseReturnValue:
    """Create one's own account while logged out (the activation link is mailed)."""
    if request.method == "GET":
        return page("signup.html")
    accounts.sign_up(
        db(),
        runtime(),
        login_email=request.form.get("login_email", ""),
        first_name=request.form.get("first_name", ""),
        last_name=request.form.get("last_name", ""),
    )
    return page("signup.html", sent=True)


@blp.route("/activation", methods=["GET", "POST"])
@open_page
def activation() -> ResponseReturnValue:
    """The link of the activation mail: choose a password, the account is active."""
    if request.method == "GET":
        return page("password.html", purpose="activation", token=request.args.get("token", ""))
    accounts.activate(
        db(),
        runtime(),
        token=request.form.get("token", ""),
        password=_confirmed_password(),
    )
    return redirect(url_for("console.login", done="activated"))


@blp.route("/password-reset", methods=["GET", "POST"])
@open_page
def password_reset() -> ResponseReturnValue:
    """The link of the "forgot password" mail: choose a new password."""
    if request.method == "GET":
        return page("password.html", purpose="reset", token=request.args.get("token", ""))
    accounts.reset_password(
        db(), runtime(), token=request.form.get("token", ""), password=_confirmed_password()
    )
    return redirect(url_for("console.login", done="password_changed"))


@blp.route("/forgot-password", methods=["GET", "POST"])
@open_page
def forgot_password() -> ResponseReturnValue:
    """Ask for a "forgot password" link: the same answer whatever the address."""
    if request.method == "GET":
        return page("forgot.html")
    accounts.request_password_reset(
        db(), runtime(), request.form.get("login_email", ""), request.remote_addr
    )
    return page("forgot.html", sent=True)


def _confirmed_password() -> str:
    password = request.form.get("password", "")
    if password != request.form.get("password_again", ""):
        raise Invalid(i18n.t("The two passwords differ."), code="passwords_differ")
    return password


@blp.route("/")
def home() -> ResponseReturnValue:
    """My structures: where I am attached, with my role, and what I may do there."""
    structures, roles = _my_structures()
    return page("home.html", structures=structures, roles=roles)


def _my_structures() -> tuple[list[Any], dict[int, str | None]]:
    """The structures I see, and my role on each (None: not attached)."""
    mine = structure_flow.list_visible(db(), runtime(), g.user, page=1, page_size=200)
    return mine.items, {s.id: role_on(db(), g.user, s.id) for s in mine.items}


@blp.route("/me", methods=["GET"])
def me() -> ResponseReturnValue:
    """My page: my account, my invitations, my requests, ask for more."""
    pending = invitations.list_mine(db(), g.user, status="pending", page=1, page_size=100)
    mine_att = attachments.list_requests(
        db(),
        runtime(),
        g.user,
        structure_id=None,
        status=None,
        created_from=None,
        created_to=None,
        mine=True,
        page=1,
        page_size=50,
    )
    mine_sub = subscriptions.list_requests(
        db(),
        runtime(),
        g.user,
        structure_id=None,
        status=None,
        created_from=None,
        created_to=None,
        mine=True,
        page=1,
        page_size=50,
    )
    spaces = runtime().policies.spaces
    structures, roles = _my_structures()
    return page(
        "me.html",
        invitations=pending.items,
        invited_to=invitations.designations(db(), pending.items),
        attached=[s for s in structures if roles[s.id]],
        led=[s for s in structures if roles[s.id] == "principal"],
        attachment_requests=mine_att.items,
        subscription_requests=mine_sub.items,
        asked_of=structure_flow.designations(
            db(), [r.structure_id for r in (*mine_att.items, *mine_sub.items)]
        ),
        spaces=spaces,
    )


@blp.route("/me/attachment-requests", methods=["POST"])
def ask_attachment() -> ResponseReturnValue:
    structure = structure_flow.lookup(
        db(),
        g.user,
        identifier_type=request.form.get("identifier_type", "SIRET"),
        identifier_value=request.form.get("identifier_value", ""),
    )
    attachments.create_request(
        db(),
        runtime(),
        g.user,
        structure_id=structure.id,
        whole_structure=True,
        comment=request.form.get("comment") or None,
    )
    return web.done("console.me", "request_sent")


@blp.route("/me/subscription-requests", methods=["POST"])
def ask_subscription() -> ResponseReturnValue:
    lines: list[dict[str, Any]] = [
        {
            "space": request.form.get("space", ""),
            "service_id": None,
            "level": request.form.get("level", "consult"),
        }
    ]
    structure_id = request.form.get("structure_id", "")
    subscriptions.create_request(
        db(),
        runtime(),
        g.user,
        structure_id=int(structure_id) if structure_id.isdigit() else 0,
        lines=lines,
        comment=request.form.get("comment") or None,
    )
    return web.done("console.me", "request_sent")


@blp.route("/me/invitations/<id:invitation_id>", methods=["POST"])
def answer_invitation(invitation_id: int) -> ResponseReturnValue:
    if request.form.get("answer") == "accept":
        invitations.accept(db(), runtime(), g.user, invitation_id)
        return web.done("console.me", "invitation_accepted")
    invitations.refuse(db(), runtime(), g.user, invitation_id)
    return web.done("console.me", "invitation_refused")


@blp.route("/me/deactivate", methods=["POST"])
def deactivate() -> ResponseReturnValue:
    """Deactivate my own account; a principal names, in the same form, a
    successor (login email) for each structure they lead (`successor_<id>`
    fields). The session ends with it; the log-in page shows until when the
    account can be reactivated."""
    successors = [
        lifecycle.Successor(structure_id=int(key.removeprefix(SUCCESSOR)), login_email=email)
        for key, value in request.form.items()
        if key.startswith(SUCCESSOR)
        and key.removeprefix(SUCCESSOR).isdigit()
        and (email := value.strip())
    ]
    user = lifecycle.deactivate_self(
        db(),
        runtime(),
        g.user,
        password=request.form.get("password", ""),
        successors=successors,
        address=request.remote_addr,
    )
    until = lifecycle.reactivable_until(user)
    sessions.end(db(), runtime(), g.console_session_id)
    return web.log_out_cookie(
        redirect(
            url_for(
                "console.login",
                done="deactivated",
                until=until.strftime(UNTIL_FORMAT) if until else None,
            )
        )
    )


SUCCESSOR = "successor_"
UNTIL_FORMAT = "%Y-%m-%dT%H:%M"


def _until(value: str | None) -> str | None:
    """The reactivation deadline carried by the log-in link, shown only if it
    is a date and time (the link is not trusted to carry any other text)."""
    try:
        until = dt.datetime.strptime(f"{value or ''}+0000", f"{UNTIL_FORMAT}%z")
    except ValueError:
        return None
    return until.strftime("%Y-%m-%d %H:%M")


@blp.route("/reactivate", methods=["GET", "POST"])
@open_page
def reactivate() -> ResponseReturnValue:
    """Reactivate my account within 60 days of its deactivation."""
    if request.method == "GET":
        return page("reactivate.html")
    lifecycle.reactivate_self(
        db(),
        runtime(),
        login_email=request.form.get("login_email", ""),
        password=request.form.get("password", ""),
        address=request.remote_addr,
    )
    return redirect(url_for("console.login", done="reactivated"))
