"""The change feed: GET /v1/changes, for client applications that cache
decisions (docs/clients.md, "Following the change feed")."""

from __future__ import annotations

from dataclasses import asdict

from flask.views import MethodView

from authz.engine import changes

from . import schemas as s
from .blueprint import Blueprint
from .identity import caller, for_clients, runtime

blp = Blueprint("changes", __name__, url_prefix="/v1/changes", description="Change feed")


@blp.route("")
class Changes(MethodView):
    @blp.operation("list_changes")
    @for_clients
    @blp.arguments(s.ChangesQuerySchema, location="query")
    @blp.response(200, s.ChangePageSchema)
    @blp.problem(403, "A person's token: the feed is for client applications (`clients_only`)")
    @blp.problem(410, "The log no longer reaches after_revision (`changes_gone`): resynchronise")
    def get(self, args):
        """What changed at each policy revision after `after_revision`, oldest
        first, waiting up to `wait` seconds for a change when there is none."""
        return asdict(changes.read_changes(runtime(), caller(), **args))
