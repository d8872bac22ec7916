"""Consent before power over an account: the invitations a manager's direct
attachment becomes, answered by the person invited, and leaving a structure."""

from __future__ import annotations

from flask import Response, json
from flask.views import MethodView
from flask_smorest import Blueprint

from authz.workflows import attachments, invitations

from . import schemas as s
from . import schemas_invitations as si
from .identity import current_user, db, runtime
from .paging import page_args

blp = Blueprint(
    "invitations",
    __name__,
    url_prefix="/v1",
    description="Invitations to join a structure, and leaving one",
)


def invitation_created(invitation) -> Response:
    """The 202 answer of a direct attachment that became an invitation."""
    return Response(
        json.dumps(si.InvitationSchema().dump(invitation)),
        status=202,
        mimetype="application/json",
    )


@blp.route("/me/invitations")
class MyInvitations(MethodView):
    @blp.arguments(si.InvitationQueryArgs, location="query")
    @blp.response(200, s.page_of(si.InvitationSchema))
    def get(self, args):
        """The invitations made to you, newest first (filter: status)."""
        return invitations.list_mine(
            db(), current_user(), status=args.pop("status", None), **page_args(args)
        )


@blp.route("/me/invitations/<int:invitation_id>/acceptance")
class Acceptance(MethodView):
    @blp.response(200, si.InvitationSchema)
    @blp.alt_response(404, schema=s.Problem, description="Unknown, or not made to you")
    @blp.alt_response(
        409, schema=s.Problem, description="Already answered, expired, or no longer possible"
    )
    def post(self, invitation_id):
        """Accept an invitation: you are attached to the structure with its role,
        scope and dates; its managers are told."""
        return invitations.accept(db(), runtime(), current_user(), invitation_id)


@blp.route("/me/invitations/<int:invitation_id>/refusal")
class Refusal(MethodView):
    @blp.response(200, si.InvitationSchema)
    @blp.alt_response(404, schema=s.Problem, description="Unknown, or not made to you")
    @blp.alt_response(409, schema=s.Problem, description="Already answered, or expired")
    def post(self, invitation_id):
        """Refuse an invitation: nothing changes for you; the managers are told."""
        return invitations.refuse(db(), runtime(), current_user(), invitation_id)


@blp.route("/me/structures/<int:structure_id>")
class MyStructure(MethodView):
    @blp.response(204)
    @blp.alt_response(404, schema=s.Problem, description="Not a structure you are attached to")
    @blp.alt_response(
        409, schema=s.Problem, description="You are its principal: designate a successor first"
    )
    def delete(self, structure_id):
        """Leave a structure: your attachments and subscriptions there end; its
        managers are told."""
        attachments.leave(db(), runtime(), current_user(), structure_id)


@blp.route("/structures/<int:structure_id>/invitations")
class StructureInvitations(MethodView):
    @blp.arguments(si.InvitationQueryArgs, location="query")
    @blp.response(200, s.page_of(si.InvitationSchema))
    @blp.alt_response(404, schema=s.Problem, description="Unknown, or not visible")
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


@blp.route("/structures/<int:structure_id>/invitations/<int:invitation_id>")
class StructureInvitation(MethodView):
    @blp.response(204)
    @blp.alt_response(404, schema=s.Problem, description="Unknown, or not of this structure")
    @blp.alt_response(409, schema=s.Problem, description="Already answered, or expired")
    def delete(self, structure_id, invitation_id):
        """Withdraw a pending invitation; the person is told."""
        invitations.withdraw(db(), runtime(), current_user(), structure_id, invitation_id)
