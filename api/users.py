"""Users: what a user may do."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from authz import permissions

from . import schemas as s
from .identity import caller, for_clients, runtime
from .paging import page_args

blp = Blueprint("users", __name__, url_prefix="/v1/users", description="Users")


@blp.route("/<int:user_id>/permissions")
class UserPermissions(MethodView):
    @for_clients
    @blp.arguments(s.RevisionPageArgs, location="query")
    @blp.response(200, s.revision_page_of(s.UserRightsSchema))
    @blp.alt_response(404, schema=s.Problem, description="Unknown or not visible")
    def get(self, args, user_id):
        """What this user may do, per structure: role, management actions, and
        actions per space and service. One's own everywhere; another user's only
        on structures whose access the caller may read."""
        return permissions.user_permissions(
            runtime(), caller(), user_id, at_least_revision=args.pop("at_least_revision", None),
            **page_args(args))
