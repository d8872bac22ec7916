"""Native decisions: POST /v1/checks and /v1/checks/batch."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from authz.engine import checks
from authz.engine.decisions import Question

from . import schemas as s
from .blueprint import Blueprint
from .identity import caller, for_clients, runtime

blp = Blueprint("checks", __name__, url_prefix="/v1/checks", description="Decisions")


def question(body: dict[str, Any]) -> Question:
    return Question(
        user_id=body["user_id"],
        structure_id=body["structure_id"],
        space=body.get("space"),
        action=body["action"],
        service=body.get("service"),
    )


@blp.route("")
class Check(MethodView):
    @blp.operation("check_access")
    @for_clients
    @blp.arguments(s.CheckSchema)
    @blp.response(200, s.DecisionSchema)
    @blp.problem(403, "A user asking about someone else")
    @blp.problem(503, "at_least_revision not reached")
    def post(self, body):
        """May this user do this? With the rule that allowed it or the reason it was
        denied, and the policy revision it was taken at."""
        decision = checks.check(
            runtime(),
            caller(),
            question(body),
            at_least_revision=body.get("at_least_revision"),
            explain=body["explain"],
        )
        return decision.as_dict(explain=body["explain"])


@blp.route("/batch")
class Batch(MethodView):
    @blp.operation("check_access_batch")
    @blp.problem(403, "A user asking about someone else")
    @for_clients
    @blp.arguments(s.BatchSchema)
    @blp.response(200, s.BatchDecisionSchema)
    @blp.problem(503, "at_least_revision not reached")
    @blp.problem(422, "More than AUTHZ_BATCH_MAX checks")
    def post(self, body):
        """Several decisions at once, all at the same revision, in the asked order."""
        explain = body["explain"]
        decisions = checks.check_batch(
            runtime(),
            caller(),
            [
                Question(q["user_id"], q["structure_id"], q["space"], q["action"], q["service"])
                for q in body["checks"]
            ],
            at_least_revision=body.get("at_least_revision"),
            explain=explain,
        )
        # The engine shares one Decision between the questions it denies for
        # the same reason (and allows by the same management rule): each is
        # written once.
        written: dict[int, dict[str, Any]] = {}
        answers = []
        for d in decisions:
            answer = written.get(id(d))
            if answer is None:
                answer = written[id(d)] = d.as_dict(explain=explain)
            answers.append(answer)
        return {
            "revision": decisions[0].revision,
            "policy_version": decisions[0].policy_version,
            "decisions": answers,
        }
