"""Exports and review reports for the security team. Only an active person with
the platform role 'security_reviewer' may call these routes (operators run the
service and are reviewed; they do not review themselves): everyone else gets
403 `reviewer_only`."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView

from authz import review
from authz.review import exports, reports

from . import schemas as s
from .blueprint import Blueprint
from .identity import current_user, db, runtime
from .review_html import render_html

blp = Blueprint(
    "reviews",
    __name__,
    url_prefix="/v1/reviews",
    description="Exports and review reports (security reviewers)",
)

NOT_REVIEWER = "The caller is not a security reviewer (`reviewer_only`)"


TEXT_RESPONSE = {
    "200": {
        "description": "The report as JSON, or one HTML page.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/html": {"schema": {"type": "string"}},
        },
    }
}
RIGHTS_RESPONSE = {
    "200": {
        "description": "One row per right held now: CSV with a header "
        "row (streamed), or JSON {items: [...]}.",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}
CASBIN_RESPONSE = {
    "200": {
        "description": "p and p2 rows in Casbin's CSV format.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


def _reviewer() -> None:
    review.require_reviewer(current_user())


@blp.route("/report")
class ReviewReport(MethodView):
    @blp.operation("get_review_report")
    @blp.arguments(s.ReportArgs, location="query")
    @blp.doc(responses=TEXT_RESPONSE)
    @blp.problem(403, NOT_REVIEWER)
    @blp.problem(404, "Unknown structure")
    def get(self, args):
        """Findings that need a human look, each with why it matters and the
        history entries behind it; with `since`, every change of rights since."""
        _reviewer()
        report = reports.build_report(db(), runtime(), args.get("structure_id"), args.get("since"))
        if args["format"] == "html":
            return Response(render_html(report), mimetype="text/html")
        return reports.report_json(report)


@blp.route("/rights")
class EffectiveRights(MethodView):
    @blp.operation("export_effective_rights")
    @blp.arguments(s.RightsArgs, location="query")
    @blp.doc(responses=RIGHTS_RESPONSE)
    @blp.problem(403, NOT_REVIEWER)
    @blp.problem(404, "Unknown structure")
    def get(self, args):
        """The rights actually held now, as the decision API answers them, with
        their provenance (subscription or role default)."""
        _reviewer()
        structure_id = args.get("structure_id")
        exports.export_scope(db(), structure_id)  # 404 before the stream starts
        # The stream reads in short sessions of its own: end this one now, so no
        # transaction stays open while the client reads.
        db().close()
        if args["format"] == "json":
            rows = exports.effective_rights(runtime().read_sessions, runtime(), structure_id)
            return {"items": list(rows)}
        cells = exports.rights_rows(
            runtime().read_sessions, runtime(), structure_id, csv_cells=True
        )
        return Response(
            exports.rights_csv(cells),
            mimetype="text/csv",
            headers={"Content-Disposition": 'attachment; filename="effective-rights.csv"'},
        )


@blp.route("/casbin-policy")
class CasbinPolicy(MethodView):
    @blp.operation("export_casbin_policy")
    @blp.doc(responses=CASBIN_RESPONSE)
    @blp.problem(403, NOT_REVIEWER)
    def get(self):
        """The policy the engine runs: roles.yaml's p rows and levels.csv's p2 rows."""
        _reviewer()
        return Response(exports.casbin_policy_csv(runtime()), mimetype="text/csv")
