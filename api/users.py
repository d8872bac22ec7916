"""Users: what a user may do, and their administration by the managers of their
structures (search, read, modify, activation mails, CSV export, a structure's
users). The blueprint is rooted at /v1 so it also serves /v1/structures/{id}/users."""

from __future__ import annotations

from flask import Response, stream_with_context
from flask.views import MethodView

from authz.engine import permissions
from authz.workflows import members, request_flow, users

from . import schemas as s
from .blueprint import Blueprint
from .identity import caller, current_user, db, for_clients, runtime
from .paging import page_args
from .revisions import revisioned

blp = Blueprint("users", __name__, url_prefix="/v1", description="Users")

NOT_VISIBLE = "Unknown, or not a user of a structure the caller manages"
CSV_RESPONSE = {
    "200": {
        "description": "UTF-8 CSV with a header row, streamed; one row per "
        "attachment the caller sees.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


@blp.route("/users")
class Users(MethodView):
    @blp.operation("search_users")
    @blp.arguments(s.UserSearchArgs, location="query")
    @blp.response(200, s.page_of(s.ManagedUserSchema))
    @blp.problem(422, "No criterion given")
    def get(self, args):
        """Search the users of the structures the caller manages (at least one
        criterion; every criterion given must match)."""
        return users.search(db(), runtime(), current_user(), **page_args(args), **args)


@blp.route("/users/<id:user_id>")
class UserById(MethodView):
    @blp.operation("get_user")
    @blp.response(200, s.ManagedUserDetailSchema)
    @blp.problem(404, NOT_VISIBLE)
    def get(self, user_id):
        """A user of the caller's structures, with the ids of their pending
        attachment requests the caller may process."""
        return users.get_user(db(), runtime(), current_user(), user_id)

    @blp.operation("update_user")
    @blp.problem(
        403,
        "The caller may not modify this user: not an account the caller's structure "
        "owns (`account_not_owned`), or of a higher role (`higher_role`)",
    )
    @blp.arguments(s.ProfilePatchSchema)
    @blp.response(200, s.ManagedUserSchema)
    @blp.problem(404, NOT_VISIBLE)
    def patch(self, body, user_id):
        """Change a user's contact email, names or phone (never the login email),
        for an account the caller's structure owns (created by it, attached
        nowhere else) and not of a higher role than the caller's. Written in
        that structure's history; the user is told."""
        return users.update_user(db(), runtime(), current_user(), user_id, body)


@blp.route("/users/<id:user_id>/structures")
class UserStructures(MethodView):
    @blp.operation("list_user_structures")
    @blp.arguments(s.PageArgs, location="query")
    @blp.response(200, s.page_of(s.MembershipSchema))
    @blp.problem(404, NOT_VISIBLE)
    def get(self, args, user_id):
        """The structures the user is attached to, among those the caller
        manages: role and attachment rows on each."""
        return users.user_structures(db(), runtime(), current_user(), user_id, **page_args(args))


@blp.route("/users/activation-emails")
class ActivationEmails(MethodView):
    @blp.operation("send_activation_emails")
    @blp.arguments(s.UserIdsSchema)
    @blp.response(200, s.BulkOutcomeSchema)
    def post(self, body):
        """(Re)send the activation mail to selected pending users; their earlier
        links stop working. One outcome per id."""
        return {
            "results": users.send_activation_emails(db(), runtime(), current_user(), body["ids"])
        }


@blp.route("/users/export")
class Export(MethodView):
    @blp.operation("export_users")
    @blp.arguments(s.UserExportSchema)
    @blp.doc(responses=CSV_RESPONSE)
    @blp.problem(404, "Some id is not a user the caller manages: nothing is exported")
    def post(self, body):
        """Export the selected users as CSV (main fields, and per attachment the
        structure, service, role, status and dates). Cells that a spreadsheet
        would run as a formula are prefixed with a single quote."""
        chunks = users.export_csv(db(), runtime(), current_user(), body["ids"])
        return Response(
            stream_with_context(chunks),
            mimetype="text/csv",
            headers={"Content-Disposition": 'attachment; filename="users.csv"'},
        )


@blp.route("/users/<id:user_id>/permissions")
class UserPermissions(MethodView):
    @blp.operation("get_user_permissions")
    @for_clients
    @blp.arguments(s.RevisionPageArgs, location="query")
    @blp.response(200, s.revision_page_of(s.UserRightsSchema))
    @blp.problem(503, "at_least_revision not reached")
    @blp.problem(404, "Unknown or not visible")
    def get(self, args, user_id):
        """What this user may do, per structure: role, management actions, and
        actions per space and service. One's own everywhere; another user's only
        on structures whose access the caller may read."""
        return permissions.user_permissions(
            runtime(),
            caller(),
            user_id,
            at_least_revision=args.pop("at_least_revision", None),
            **page_args(args),
        )


@blp.route("/structures/<id:structure_id>/users")
class StructureUsers(MethodView):
    @blp.operation("list_structure_users")
    @blp.arguments(s.StructureUsersArgs, location="query")
    @blp.response(200, s.page_of(s.MemberSchema))
    @blp.problem(403, "Caller may not list its users")
    @blp.problem(404, "Unknown, or not visible")
    def get(self, args, structure_id):
        """The users attached to the structure: their role and attachment rows
        (statuses, services, dates)."""
        return users.structure_users(
            db(),
            runtime(),
            current_user(),
            structure_id,
            status=args.pop("status", None),
            **page_args(args),
        )


@blp.route("/structures/<id:structure_id>/users/<id:user_id>/role")
class MemberRole(MethodView):
    @blp.operation("change_member_role")
    @blp.arguments(s.RoleChangeSchema)
    @blp.response(200, s.written(s.MemberSchema))
    @blp.problem(
        403, "The caller may not change it (`action_not_allowed`), or the member ranks higher"
    )
    @blp.problem(
        409, "The member is the principal or a technical user, or the structure is inactive"
    )
    @blp.problem(404, "Unknown, invisible, or not a member of the structure")
    @revisioned
    def put(self, body, structure_id, user_id):
        """Change a member's role (secondary or simple) on every validated
        attachment of theirs here. History, mail to the member, revision bump."""
        return members.change_role(db(), runtime(), current_user(), structure_id, user_id, **body)


@blp.route("/structures/<id:structure_id>/users/<id:user_id>/services")
class MemberServices(MethodView):
    @blp.operation("add_member_services")
    @blp.arguments(s.ServicesAddSchema)
    @blp.response(200, s.written(s.MemberSchema))
    @blp.problem(403, "The caller may not attach users here, or the member ranks higher")
    @blp.problem(409, "Attached to the whole structure, principal, or structure inactive")
    @blp.problem(404, "Unknown, invisible, or not a member of the structure")
    @revisioned
    def post(self, body, structure_id, user_id):
        """Attach a member to more services, with their current role."""
        return members.add_services(db(), runtime(), current_user(), structure_id, user_id, **body)


@blp.route("/structures/<id:structure_id>/users/<id:user_id>/services/<id:service_id>")
class MemberService(MethodView):
    @blp.operation("remove_member_service")
    @blp.response(200, s.written(s.MemberSchema))
    @blp.problem(403, "The caller may not remove attachments here, or the member ranks higher")
    @blp.problem(409, "The last attachment (remove the attachment instead), or the principal")
    @blp.problem(404, "Unknown, invisible, or not attached to that service")
    @revisioned
    def delete(self, structure_id, user_id, service_id):
        """Withdraw one service from a member: that attachment becomes
        deactivated, with their subscriptions on the service."""
        return members.remove_service(
            db(), runtime(), current_user(), structure_id, user_id, service_id
        )


@blp.route("/structures/<id:structure_id>/users/<id:user_id>/subscriptions")
class MemberSubscriptions(MethodView):
    @blp.operation("list_member_subscriptions")
    @blp.response(200, s.MemberSubscriptionsSchema)
    @blp.problem(403, "Caller may not list the structure's users")
    @blp.problem(404, "Unknown, invisible, or not a member of the structure")
    def get(self, structure_id, user_id):
        """A member's subscriptions here, validated and deactivated, with their ids."""
        return {
            "items": members.subscriptions_of(
                db(), runtime(), current_user(), structure_id, user_id
            )
        }


@blp.route("/structures/<id:structure_id>/users/<id:user_id>/subscriptions/<id:subscription_id>")
class MemberSubscription(MethodView):
    @blp.operation("revoke_member_subscription")
    @blp.response(200, s.WrittenSchema)
    @blp.problem(403, "The caller may not process subscriptions here, or the member ranks higher")
    @blp.problem(409, "The member is the principal")
    @blp.problem(404, "Unknown, invisible, or not a validated subscription of that member")
    @revisioned
    def delete(self, structure_id, user_id, subscription_id):
        """Revoke one subscription line of a member (it becomes deactivated;
        answers the revision of the change)."""
        members.revoke_subscription(
            db(), runtime(), current_user(), structure_id, user_id, subscription_id
        )


@blp.route("/me/summary")
class ManagerSummary(MethodView):
    @blp.operation("get_manager_summary")
    @blp.response(200, s.ManagerSummarySchema)
    def get(self):
        """The manager's summary screen: the structures one manages today, one's
        role there, and the pending requests of others waiting on each (empty
        for someone who manages nothing)."""
        return request_flow.summary(db(), runtime(), current_user())
