"""The history of manager actions (read-only)."""

from __future__ import annotations

from flask.views import MethodView

from authz.workflows import history

from . import schemas as s
from .blueprint import Blueprint
from .identity import current_user, db, runtime
from .paging import page_args

blp = Blueprint("history", __name__, url_prefix="/v1", description="History")


@blp.route("/structures/<id:structure_id>/history")
class StructureHistory(MethodView):
    @blp.operation("list_structure_history")
    @blp.problem(403, "The caller may not read the structure's history")
    @blp.arguments(s.HistoryQuerySchema, location="query")
    @blp.response(200, s.page_of(s.HistoryEntrySchema))
    @blp.problem(404, "Unknown or not visible")
    def get(self, args, structure_id):
        """The structure's history, newest first, filtered by period, action, user."""
        return history.list_entries(
            db(), runtime(), current_user(), structure_id, **page_args(args), **args
        )


@blp.route("/history/<id:entry_id>")
class HistoryEntryById(MethodView):
    @blp.operation("get_history_entry")
    @blp.response(200, s.HistoryDetailSchema)
    @blp.problem(404, "Unknown or not readable")
    def get(self, entry_id):
        """One entry with its detail (before / after)."""
        return history.get_entry(db(), runtime(), current_user(), entry_id)
