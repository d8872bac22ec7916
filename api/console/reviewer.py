"""The security reviewer's pages: the review report and a decision explained
(the same authz/review functions as GET /v1/reviews/report and
`authz policy explain`)."""

from __future__ import annotations

from flask import g, request
from flask.typing import ResponseReturnValue

from authz import review
from authz.errors import Invalid
from authz.review import policytest, reports

from ..identity import db, runtime
from .web import blp, page


@blp.route("/review")
def review_report() -> ResponseReturnValue:
    """Findings that need a human look, each with why it matters."""
    review.require_reviewer(g.user)
    report = reports.report_json(reports.build_report(db(), runtime()))
    return page("review.html", report=report)


@blp.route("/review/explain")
def explain() -> ResponseReturnValue:
    """Why a decision is what it is: the chain of facts and rules, or the
    first missing link."""
    review.require_reviewer(g.user)
    asked = {
        k: request.args.get(k, "").strip()
        for k in ("user_id", "structure_id", "space", "action", "service")
    }
    text = None
    if asked["user_id"] or asked["structure_id"]:
        if not (asked["user_id"].isdigit() and asked["structure_id"].isdigit()):
            raise Invalid("User and structure are ids (numbers).", code="validation_failed")
        text = policytest.explain(
            runtime(),
            int(asked["user_id"]),
            int(asked["structure_id"]),
            asked["space"] or None,
            asked["action"] or "consult",
            asked["service"] or None,
        )
    return page("explain.html", asked=asked, text=text)
