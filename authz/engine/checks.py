"""Decisions asked for by other systems (client applications) or by a user about
themself, at the latest committed revision or at least the one asked for."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .. import metrics, roles, tracing
from ..errors import Forbidden, Invalid
from ..runtime import Runtime
from .decisions import ERROR_REASON, Decision, Question


@dataclass(frozen=True)
class Caller:
    """Who asks: a client application (any subject) or a person (themself only)."""

    user_id: int | None = None
    client_id: int | None = None

    def may_ask_about(self, user_id: int) -> bool:
        return self.client_id is not None or self.user_id == user_id


def require_subjects(caller: Caller, user_ids: Iterable[int | None]) -> None:
    """Raises Forbidden `subject_not_allowed` when a person asks about another
    user (None, an id that names no user, reveals nothing and is let through:
    it is denied)."""
    if caller.client_id is not None:  # a client application may ask about anyone
        return
    if any(uid is not None and not caller.may_ask_about(uid) for uid in user_ids):
        raise Forbidden(
            "A user may only ask about their own rights; other systems "
            "ask with a client application's API key.",
            code="subject_not_allowed",
        )


def check(
    rt: Runtime,
    caller: Caller,
    question: Question,
    *,
    at_least_revision: int | None = None,
    explain: bool = False,
) -> Decision:
    """One decision, at the latest committed revision (at least `at_least_revision`).

    Raises Forbidden `subject_not_allowed`, Unavailable `revision_unavailable`.
    """
    # check_batch's steps for one question, without its lists (the hot path).
    if caller.client_id is None:
        require_subjects(caller, (question.user_id,))
    with metrics.DecisionTimer("check") as count:
        decision = rt.decider.decide_fresh(question, at_least=at_least_revision, explain=explain)
        if decision.allowed:
            count(1, 0, 0)
        elif decision.reason == ERROR_REASON:
            count(0, 0, 1)
        else:
            count(0, 1, 0)
        if tracing.TRACER is not None:
            tracing.decided([decision], "check")
    rt.recorder.record_lists("check", caller, (question,), (decision,))
    return decision


def check_batch(
    rt: Runtime,
    caller: Caller,
    questions: Sequence[Question],
    *,
    at_least_revision: int | None = None,
    explain: bool = False,
    today: dt.date | None = None,
    api: str = "batch",
) -> list[Decision]:
    """Several decisions, all taken at the same revision.

    Raises Invalid `batch_too_large` (over AUTHZ_BATCH_MAX), Forbidden,
    Unavailable.
    """
    if len(questions) > rt.settings.batch_max:
        raise Invalid(
            f"At most {rt.settings.batch_max} questions per batch.", code="batch_too_large"
        )
    require_subjects(caller, [q.user_id for q in questions])
    decider = rt.decider
    with metrics.DecisionTimer(api) as count, decider.reading(at_least_revision):
        today = today or roles.today()
        decisions = [decider.decide(q, today=today, explain=explain) for q in questions]
        count(*tally(decisions))
        if tracing.TRACER is not None:
            tracing.decided(decisions, api)
    rt.recorder.record_lists(api, caller, questions, decisions)
    return decisions


def tally(decisions: Iterable[object]) -> tuple[int, int, int]:
    """(allowed, denied, errors) among `decisions`; an engine error is a denial
    with the reason ERROR_REASON, anything that is not a Decision an error."""
    allowed = denied = errors = 0
    for d in decisions:
        if not isinstance(d, Decision) or d.reason == ERROR_REASON:
            errors += 1
        elif d.allowed:
            allowed += 1
        else:
            denied += 1
    return allowed, denied, errors
