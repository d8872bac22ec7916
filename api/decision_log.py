"""The decision log, for the security team: GET /v1/decision-log. Only an
active security reviewer may read it (403 `reviewer_only` for everyone else),
as a page of JSON or, with format=csv, every matching record (streamed)."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView

from authz import decision_log, review

from . import schemas as s
from .blueprint import Blueprint
from .identity import current_user, db, runtime
from .paging import page_args

blp = Blueprint(
    "decision_log",
    __name__,
    url_prefix="/v1/decision-log",
    description="Decisions recorded (security reviewers)",
)


def filters(args: dict) -> decision_log.Filters:
    result = args.pop("result", None)
    return decision_log.Filters(
        user_id=args.get("user_id"),
        structure_id=args.get("structure_id"),
        service=args.get("service"),
        space=args.get("space"),
        action=args.get("action"),
        allowed=None if result is None else result == "allowed",
        client_id=args.get("client_id"),
        api=args.get("api"),
        since=args.get("since"),
        until=args.get("until"),
    )


@blp.route("")
class DecisionLog(MethodView):
    @blp.operation("list_decision_log")
    @blp.arguments(s.DecisionLogQuerySchema, location="query")
    @blp.response(200, s.page_of(s.DecisionRecordSchema))
    @blp.problem(403, "The caller is not a security reviewer (`reviewer_only`)")
    def get(self, args):
        """Decisions recorded (AUTHZ_DECISION_LOG), newest first, filtered by
        subject, structure, service, space, action, result, client, API and
        period: e.g. who was allowed to modify the issued invoices of structure
        12 last week, and by which rule."""
        review.require_reviewer(current_user())
        paging = page_args(args)
        chosen = filters(args)
        if args["format"] == "csv":
            session = runtime().read_sessions()

            def stream():
                try:
                    yield from decision_log.to_csv(decision_log.iter_records(session, chosen))
                finally:
                    session.close()

            return Response(
                stream(),
                mimetype="text/csv",
                headers={"Content-Disposition": 'attachment; filename="decision-log.csv"'},
            )
        return decision_log.list_records(db(), chosen, **paging)
