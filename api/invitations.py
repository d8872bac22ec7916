"""Consent before power over an account: the invitations a manager's direct
attachment becomes, answered by the person invited, and leaving a structure."""

from __future__ import annotations

from flask import Response, json
from flask.views import MethodView

from authz.workflows import attachments, invitations
from models import Invitation

from . import schemas as s
from .blueprint import Blueprint
from .identity import current_user, db, runtime
from .paging import page_args
from .revisions import revisioned

blp = Blueprint(
    "invitations",
    __name__,
    url_prefix="/v1",
    description="Invitations to join a structure, and leaving one",
)

NOT_MINE = "Unknown, or not made to you"


def invitation_created(invitation: Invitation) -> Response:
    """The 202 answer of a direct attachment that became an invitation."""
    return Response(
        json.dumps(s.InvitationSchema().dump(invitation)),
        status=202,
        mimetype="application/json",
    )


@blp.route("/me/invitations")
class MyInvitations(MethodView):
    @blp.operation("list_own_invitations")
    @blp.arguments(s.InvitationQueryArgs, location="query")
    @blp.response(200, s.page_of(s.InvitationSchema))
    def get(self, args):
        """The invitations made to you, newest first (filter: status)."""
        return invitations.list_mine(
            db(), current_user(), status=args.pop("status", None), **page_args(args)
        )


@blp.route("/me/invitations/<id:invitation_id>/acceptance")
class Acceptance(MethodView):
    @blp.operation("accept_invitation")
    @blp.response(200, s.written(s.InvitationSchema))
    @blp.problem(404, NOT_MINE)
    @blp.problem(409, "Already answered, expired, or no longer possible")
    @revisioned
    def post(self, invitation_id):
        """Accept an invitation: you are attached to the structure with its role,
        scope and dates; its managers are told."""
        return invitations.accept(db(), runtime(), current_user(), invitation_id)


@blp.route("/me/invitations/<id:invitation_id>/refusal")
class Refusal(MethodView):
    @blp.operation("refuse_invitation")
    @blp.response(200, s.written(s.InvitationSchema))
    @blp.problem(404, NOT_MINE)
    @blp.problem(409, "Already answered, or expired")
    @revisioned
    def post(self, invitation_id):
        """Refuse an invitation: nothing changes for you; the managers are told."""
        return invitations.refuse(db(), runtime(), current_user(), invitation_id)


@blp.route("/me/structures/<id:structure_id>")
class MyStructure(MethodView):
    @blp.operation("leave_structure")
    @blp.response(200, s.WrittenSchema)
    @blp.problem(403, "A technical user cannot leave its structure")
    @blp.problem(404, "Not a structure you are attached to")
    @blp.problem(409, "You are its principal: designate a successor first")
    @revisioned
    def delete(self, structure_id):
        """Leave a structure: your attachments and subscriptions there end; its
        managers are told (answers the revision of the change)."""
        attachments.leave(db(), runtime(), current_user(), structure_id)


@blp.route("/structures/<id:structure_id>/invitations")
class StructureInvitations(MethodView):
    @blp.operation("list_structure_invitations")
    @blp.arguments(s.InvitationQueryArgs, location="query")
    @blp.response(200, s.page_of(s.InvitationSchema))
    @blp.problem(403, "The caller may not read this structure's invitations")
    @blp.problem(404, "Unknown, or not visible")
    def get(self, args, structure_id):
        """The structure's invitations, newest first (filter: status)."""
        return invitations.list_for_structure(
            db(),
            runtime(),
            current_user(),
            structure_id,
            status=args.pop("status", None),
            **page_args(args),
        )


@blp.route("/structures/<id:structure_id>/invitations/<id:invitation_id>")
class StructureInvitation(MethodView):
    @blp.operation("withdraw_invitation")
    @blp.response(204)
    @blp.problem(403, "The caller may not withdraw this structure's invitations")
    @blp.problem(404, "Unknown, or not of this structure")
    @blp.problem(409, "Already answered, or expired")
    def delete(self, structure_id, invitation_id):
        """Withdraw a pending invitation; the person is told."""
        invitations.withdraw(db(), runtime(), current_user(), structure_id, invitation_id)
