"""The manager's pages, in the guide's order: a structure's overview, pending
requests (open, validate with role / services / start date / levels, refuse
with a reason, one or in bulk), the structure's users (search, direct
attachment, removal, CSV export, activation mails), technical users,
principal transfer, identifier change and the history with names.

Each view reads its form, calls ONE workflow of authz/ (the same as the REST
API's view) and renders or redirects; every refusal (404 for a structure the
caller does not manage, 403, 409, 422) is the workflow's."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, g, request, stream_with_context
from flask.typing import ResponseReturnValue

from authz.errors import Invalid
from authz.pagination import Page
from authz.roles import today
from authz.workflows import (
    attachments,
    history,
    identifier,
    lifecycle,
    subscriptions,
    technical,
    users,
)
from authz.workflows import structures as structure_flow
from authz.workflows.access import role_on

from ..identity import db, runtime
from . import web
from .web import blp, form_ids, page

PAGE_SIZE = 50


def _date(value: str | None, field: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise Invalid("Not a date.", errors={field: ["Not a date (YYYY-MM-DD)."]}) from None


def _page_number() -> int:
    value = request.args.get("page", "1")
    return int(value) if value.isdigit() and 0 < int(value) < 10_000 else 1


def _pending(module: Any, structure_id: int) -> list[Any]:
    found: Page = module.list_requests(
        db(),
        runtime(),
        g.user,
        structure_id=structure_id,
        status="pending",
        created_from=None,
        created_to=None,
        mine=False,
        page=1,
        page_size=200,
    )
    return found.items


# --- a structure ----------------------------------------------------------------


@blp.route("/structures/<id:structure_id>")
def structure(structure_id: int) -> ResponseReturnValue:
    """A structure's overview: its details, services and the manager's pages."""
    found = structure_flow.get(db(), runtime(), g.user, structure_id)
    return page("structure.html", structure=found, role=_role(structure_id))


def _role(structure_id: int) -> str | None:
    return role_on(db(), g.user, structure_id)


# --- pending requests -------------------------------------------------------------


@blp.route("/structures/<id:structure_id>/requests")
def requests(structure_id: int) -> ResponseReturnValue:
    """Pending attachment and subscription requests, with the requesters' names."""
    found = structure_flow.get(db(), runtime(), g.user, structure_id)
    attach = _pending(attachments, structure_id)
    subscribe = _pending(subscriptions, structure_id)
    names = users.display_names(db(), [r.user_id for r in [*attach, *subscribe]])
    return page(
        "requests.html",
        structure=found,
        attachment_requests=attach,
        subscription_requests=subscribe,
        names=names,
    )


@blp.route("/attachment-requests/<id:request_id>")
def attachment_request(request_id: int) -> ResponseReturnValue:
    """One attachment request, every active service with the requester's status
    on it, the preselection, and the validate / refuse forms."""
    detail = attachments.request_detail(db(), runtime(), g.user, request_id)
    return page("attachment_request.html", detail=detail, today=today().isoformat())


@blp.route("/attachment-requests/<id:request_id>/validate", methods=["POST"])
def validate_attachment(request_id: int) -> ResponseReturnValue:
    service_ids = form_ids("service_ids")
    req = attachments.validate_request(
        db(),
        runtime(),
        g.user,
        request_id,
        role=request.form.get("role") or None,
        whole_structure=request.form.get("whole_structure") == "on" or not service_ids,
        service_ids=service_ids,
        valid_from=_date(request.form.get("valid_from"), "valid_from"),
        comment=request.form.get("comment") or None,
    )
    return web.done("console.requests", "validated", structure_id=req.structure_id)


@blp.route("/attachment-requests/<id:request_id>/refuse", methods=["POST"])
def refuse_attachment(request_id: int) -> ResponseReturnValue:
    req = attachments.refuse_request(
        db(), runtime(), g.user, request_id, reason=request.form.get("reason", "")
    )
    return web.done("console.requests", "refused", structure_id=req.structure_id)


@blp.route("/subscription-requests/<id:request_id>")
def subscription_request(request_id: int) -> ResponseReturnValue:
    """One subscription request: its lines, each switchable between consult and modify."""
    detail = subscriptions.request_detail(db(), runtime(), g.user, request_id)
    return page("subscription_request.html", detail=detail)


@blp.route("/subscription-requests/<id:request_id>/validate", methods=["POST"])
def validate_subscription(request_id: int) -> ResponseReturnValue:
    levels = {
        int(key.removeprefix("level_")): value
        for key, value in request.form.items()
        if key.startswith("level_") and key.removeprefix("level_").isdigit()
    }
    req = subscriptions.validate_request(
        db(),
        runtime(),
        g.user,
        request_id,
        levels=levels or None,
        comment=request.form.get("comment") or None,
    )
    return web.done("console.requests", "validated", structure_id=req.structure_id)


@blp.route("/subscription-requests/<id:request_id>/refuse", methods=["POST"])
def refuse_subscription(request_id: int) -> ResponseReturnValue:
    req = subscriptions.refuse_request(
        db(), runtime(), g.user, request_id, reason=request.form.get("reason", "")
    )
    return web.done("console.requests", "refused", structure_id=req.structure_id)


@blp.route("/structures/<id:structure_id>/requests/bulk", methods=["POST"])
def bulk_requests(structure_id: int) -> ResponseReturnValue:
    """Validate or refuse the checked requests at once; one outcome per request."""
    structure_flow.get(db(), runtime(), g.user, structure_id)
    decision = request.form.get("decision")
    reason = request.form.get("reason", "")
    outcomes = []
    for kind, module in (("attachment", attachments), ("subscription", subscriptions)):
        ids = form_ids(f"{kind}_ids")
        if not ids:
            continue
        if decision == "refuse":
            found = module.refuse_many(db(), runtime(), g.user, ids, reason=reason)
        else:
            found = module.validate_many(db(), runtime(), g.user, ids)
        outcomes += [(kind, o) for o in found]
    if not outcomes:
        raise Invalid("Check at least one request.", code="nothing_selected")
    return page("outcomes.html", structure_id=structure_id, outcomes=outcomes)


# --- a structure's users ------------------------------------------------------------


@blp.route("/structures/<id:structure_id>/users")
def structure_users(structure_id: int) -> ResponseReturnValue:
    """The structure's users (or a search among the caller's users), with the
    direct-attachment form and the bulk actions (activation mails, CSV)."""
    found = structure_flow.get(db(), runtime(), g.user, structure_id)
    criteria = {
        k: request.args[k].strip()
        for k in ("last_name", "first_name", "login_email", "status")
        if request.args.get(k, "").strip()
    }
    if criteria:
        result = users.search(
            db(),
            runtime(),
            g.user,
            designation=found.designation,
            **criteria,
            page=_page_number(),
            page_size=PAGE_SIZE,
        )
        members = [users.Member(user=u, role=None, attachments=[]) for u in result.items]
    else:
        result = users.structure_users(
            db(), runtime(), g.user, structure_id, page=_page_number(), page_size=PAGE_SIZE
        )
        members = result.items
    services = structure_flow.list_services(
        db(), runtime(), g.user, structure_id, active=True, page=1, page_size=200
    ).items
    return page(
        "users.html",
        structure=found,
        members=members,
        total=result.total,
        criteria=criteria,
        services=services,
        today=today().isoformat(),
    )


@blp.route("/structures/<id:structure_id>/users/attach", methods=["POST"])
def attach(structure_id: int) -> ResponseReturnValue:
    """Attach a person directly: at once for an account the structure created
    and still pending, else an invitation (nothing granted until accepted)."""
    service_ids = form_ids("service_ids")
    result = attachments.attach_directly(
        db(),
        runtime(),
        g.user,
        structure_id,
        login_email=request.form.get("login_email", ""),
        role=request.form.get("role") or "simple",
        whole_structure=not service_ids,
        service_ids=service_ids,
        valid_from=_date(request.form.get("valid_from"), "valid_from"),
        comment=request.form.get("comment") or None,
    )
    notice = "invitation_sent" if not isinstance(result, list) else "attached"
    return web.done("console.structure_users", notice, structure_id=structure_id)


@blp.route("/structures/<id:structure_id>/users/<id:user_id>/remove", methods=["POST"])
def remove_user(structure_id: int, user_id: int) -> ResponseReturnValue:
    attachments.remove(
        db(),
        runtime(),
        g.user,
        structure_id,
        user_id,
        comment=request.form.get("comment") or None,
    )
    return web.done("console.structure_users", "removed", structure_id=structure_id)


@blp.route("/structures/<id:structure_id>/users/selected", methods=["POST"])
def selected_users(structure_id: int) -> ResponseReturnValue:
    """The bulk actions on the checked users: CSV export or activation mails."""
    ids = form_ids("user_ids")
    if not ids:
        raise Invalid("Check at least one user.", code="nothing_selected")
    if request.form.get("action") == "export":
        chunks = users.export_csv(db(), runtime(), g.user, ids)
        return Response(
            stream_with_context(chunks),
            mimetype="text/csv",
            headers={"Content-Disposition": 'attachment; filename="users.csv"'},
        )
    outcomes = users.send_activation_emails(db(), runtime(), g.user, ids)
    return page(
        "outcomes.html", structure_id=structure_id, outcomes=[("user", o) for o in outcomes]
    )


@blp.route("/structures/<id:structure_id>/accounts", methods=["POST"])
def create_account(structure_id: int) -> ResponseReturnValue:
    """Create the pending account of a person to attach (activation mail), then
    attach them at once (the structure created the account)."""
    user = users.create_account_for(
        db(),
        runtime(),
        g.user,
        structure_id=structure_id,
        login_email=request.form.get("login_email", ""),
        first_name=request.form.get("first_name", ""),
        last_name=request.form.get("last_name", ""),
    )
    attachments.attach_directly(
        db(),
        runtime(),
        g.user,
        structure_id,
        user_id=user.id,
        role=request.form.get("role") or "simple",
        whole_structure=True,
    )
    return web.done("console.structure_users", "account_created", structure_id=structure_id)


# --- technical users ---------------------------------------------------------------


@blp.route("/structures/<id:structure_id>/technical-users", methods=["GET", "POST"])
def technical_users(structure_id: int) -> ResponseReturnValue:
    """The structure's technical users (principal only); creating one shows
    its connection information once."""
    if request.method == "POST":
        _user, credential, login, secret = technical.create_technical_user(
            db(), runtime(), g.user, structure_id, label=request.form.get("label", "")
        )
        return page(
            "secret.html",
            structure_id=structure_id,
            login=login,
            secret=secret,
            expires_at=credential.secret_expires_at,
            label=credential.label,
        )
    listed = technical.list_technical_users(
        db(), runtime(), g.user, structure_id, page=1, page_size=200
    )
    found = structure_flow.get(db(), runtime(), g.user, structure_id)
    return page("technical.html", structure=found, technical_users=listed.items)


@blp.route("/structures/<id:structure_id>/technical-users/<id:user_id>/reset", methods=["POST"])
def reset_technical_secret(structure_id: int, user_id: int) -> ResponseReturnValue:
    secret = technical.reset_secret(
        db(),
        runtime(),
        g.user,
        structure_id,
        user_id,
        confirm=request.form.get("confirm") == "on",
    )
    info = technical.get_technical_user(db(), runtime(), g.user, structure_id, user_id)
    return page(
        "secret.html",
        structure_id=structure_id,
        login=info.login,
        secret=secret,
        expires_at=info.secret_expires_at,
        label=info.label,
    )


# --- principal transfer, identifier change -----------------------------------------


@blp.route("/structures/<id:structure_id>/principal", methods=["GET", "POST"])
def transfer(structure_id: int) -> ResponseReturnValue:
    """Leave the principal role: designate a successor by login email."""
    found = structure_flow.get(db(), runtime(), g.user, structure_id)
    if request.method == "GET":
        return page("transfer.html", structure=found)
    lifecycle.designate_principal(
        db(),
        runtime(),
        g.user,
        structure_id,
        login_email=request.form.get("login_email", ""),
        comment=request.form.get("comment") or None,
    )
    return web.done("console.structure", "principal_designated", structure_id=structure_id)


@blp.route("/structures/<id:structure_id>/identifier", methods=["GET", "POST"])
def change_identifier(structure_id: int) -> ResponseReturnValue:
    """Change of identifier: the structure is duplicated under the new one."""
    found = structure_flow.get(db(), runtime(), g.user, structure_id)
    if request.method == "GET":
        return page("identifier.html", structure=found)
    successor = identifier.change_identifier(
        db(),
        runtime(),
        g.user,
        structure_id,
        identifier_type=request.form.get("identifier_type", ""),
        identifier_value=request.form.get("identifier_value", ""),
        designation=request.form.get("designation") or None,
        confirm=request.form.get("confirm") == "on",
    )
    return web.done("console.structure", "identifier_changed", structure_id=successor.id)


# --- history -----------------------------------------------------------------------


@blp.route("/structures/<id:structure_id>/history")
def structure_history(structure_id: int) -> ResponseReturnValue:
    """The structure's history, newest first, with the names of who did what to whom."""
    found = structure_flow.get(db(), runtime(), g.user, structure_id)
    action = request.args.get("action", "").strip() or None
    entries = history.list_entries(
        db(),
        runtime(),
        g.user,
        structure_id,
        action=action,
        page=_page_number(),
        page_size=PAGE_SIZE,
    )
    names = users.display_names(
        db(), [i for e in entries.items for i in (e.actor_id, e.target_user_id)]
    )
    return page(
        "history.html",
        structure=found,
        entries=entries.items,
        total=entries.total,
        names=names,
        action=action or "",
    )
