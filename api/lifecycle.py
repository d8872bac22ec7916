"""Leaving the principal role, deactivating and reactivating one's account,
and the change of identifier."""

from __future__ import annotations

from flask import request
from flask.views import MethodView

from authz.workflows import identifier, lifecycle

from . import schemas as s
from .blueprint import Blueprint
from .identity import current_user, db, public, runtime
from .paging import page_args
from .revisions import revisioned

blp = Blueprint("lifecycle", __name__, url_prefix="/v1", description="Principal and accounts")


@blp.route("/structures/<id:structure_id>/principal")
class Principal(MethodView):
    @blp.operation("change_principal")
    @blp.problem(409, "The structure is inactive, or the successor cannot lead it")
    @blp.arguments(s.DesignationSchema)
    @blp.response(200, s.written(s.StructureSchema))
    @blp.problem(403, "Not the principal")
    @revisioned
    def post(self, body, structure_id):
        """Hand the principal role to another active person (by user_id or login
        email): the principal names their successor and stays attached as a
        simple user; the operator appoints one where the structure has none."""
        return lifecycle.change_principal(db(), runtime(), current_user(), structure_id, **body)


@blp.route("/structures/without-principal")
class WithoutPrincipal(MethodView):
    @blp.operation("list_structures_without_principal")
    @blp.arguments(s.PageArgs, location="query")
    @blp.response(200, s.page_of(s.StructureSchema))
    def get(self, args):
        """For the operator: active structures with no principal able to act."""
        return lifecycle.structures_without_principal(db(), current_user(), **page_args(args))


@blp.route("/me/deactivation")
class Deactivation(MethodView):
    @blp.operation("deactivate_own_account")
    @blp.arguments(s.DeactivationSchema)
    @blp.response(200, s.written(s.DeactivatedAccountSchema))
    @blp.problem(409, "Successors missing, or a centrally managed structure")
    @blp.problem(429, "Too many wrong passwords")
    @revisioned
    def post(self, body):
        """Deactivate one's account, naming a successor for every structure one
        leads; reactivable for 60 days (the answer says until when)."""
        return lifecycle.deactivate_self(
            db(),
            runtime(),
            current_user(),
            password=body["password"],
            successors=[lifecycle.Successor(**x) for x in body["successors"]],
            address=request.remote_addr,
        )


@blp.route("/me/reactivation")
class Reactivation(MethodView):
    @blp.operation("reactivate_own_account")
    @public
    @blp.arguments(s.ReactivationSchema)
    @blp.response(200, s.written(s.UserSchema))
    @blp.problem(409, "Not deactivated, or too late")
    @blp.problem(401, "Wrong login email or password (`invalid_credentials`)")
    @blp.problem(429, "Too many failed attempts")
    @revisioned
    def post(self, body):
        """Reactivate one's account within 60 days of its deactivation (log-in
        email and password; then log in as usual)."""
        return lifecycle.reactivate_self(
            db(),
            runtime(),
            login_email=body["login_email"],
            password=body["password"],
            address=request.remote_addr,
        )


@blp.route("/structures/<id:structure_id>/identifier-change")
class IdentifierChange(MethodView):
    @blp.operation("change_structure_identifier")
    @blp.problem(403, "The caller is not the structure's principal")
    @blp.arguments(s.IdentifierChangeSchema)
    @blp.response(201, s.written(s.StructureSchema))
    @blp.problem(409, "Identifier taken, or inactive")
    @revisioned
    def post(self, body, structure_id):
        """Duplicate the structure under a new identifier (services, settings,
        spaces, attachments, subscriptions, pending requests; not the billing
        mandate nor technical users). The original becomes inactive and points
        to the returned successor."""
        return identifier.change_identifier(db(), runtime(), current_user(), structure_id, **body)
