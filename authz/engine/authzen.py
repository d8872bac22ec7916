"""AuthZEN evaluations and searches, answered by the Decider on plain values.

The HTTP binding (api/authzen/) reads the AuthZEN JSON into the values below —
an `Ask` per evaluation, a `Target` per resource, user ids and action names —
and writes the answers back; nothing here knows JSON, paths or page tokens.
Every decision is `Decider.decide` on an `authz.engine.decisions.Question`;
nothing is decided here. A request that names nothing this service knows is a
deny with its reason (the `Ask` carries it), or an empty search result.

Searches are paginated by sort key: `Search.page(after, limit)` returns the
allowed results past `after`, in key order, at the revision current when it
is asked for, and whether more remain. Nothing is repeated, and changes made
between pages show up in the pages not yet read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import metrics, roles, tracing
from ..errors import Forbidden, Invalid
from ..runtime import Runtime
from .checks import Caller, require_subjects, tally
from .decisions import Decider, Decision, Question
from .policy import SPACE_ACTIONS

EXECUTE_ALL = "execute_all"
DENY_ON_FIRST_DENY = "deny_on_first_deny"
PERMIT_ON_FIRST_PERMIT = "permit_on_first_permit"
SEMANTICS = (EXECUTE_ALL, DENY_ON_FIRST_DENY, PERMIT_ON_FIRST_PERMIT)

# What a resource search looks for.
SPACE = "space"
STRUCTURE = "structure"

# A search's sort key: a list of ints and strings (see Search.key_types).
Key = list[Any]


@dataclass(frozen=True)
class Target:
    """What a resource names: a space of a structure (on one service or all of
    them), or the structure itself (space None: management actions)."""

    structure_id: int
    space: str | None = None
    service: str | None = None


def applies(action: str, target: Target, management_actions: Collection[str]) -> str | None:
    """None when `action` can be asked about `target`, else why not (a deny
    reason): space actions on spaces, management actions on structures."""
    if target.space is not None:
        if action in SPACE_ACTIONS:
            return None
        return f"action {action!r} does not apply to a space ({', '.join(SPACE_ACTIONS)})"
    if action in management_actions:
        return None
    return f"action {action!r} is not a management action of policies/roles.yaml"


# --- evaluations -----------------------------------------------------------------


class Ask(NamedTuple):
    """One evaluation: the question for the decider, or the reason none can be
    put (a deny). A named tuple, immutable like a frozen dataclass and built
    several times faster: a batch builds a thousand (issue 13)."""

    question: Question | None
    denial: str | None
    user_id: int | None  # the subject's user id, for the caller's right to ask
    at_least: int | None
    explain: bool


def _answer(decider: Decider, ask: Ask, today: dt.date) -> Decision:
    """The decision for one evaluation (a denial when no question could be put)."""
    if ask.question is None:
        return Decision(
            False, decider.revision, reason=ask.denial, policy_version=decider.policy_version
        )
    return decider.decide(ask.question, today=today, explain=ask.explain)


def evaluate(rt: Runtime, caller: Caller, ask: Ask) -> Decision:
    """Access Evaluation: one decision, at least at the revision asked for.

    Raises Forbidden `subject_not_allowed` (a person asking about someone
    else), Unavailable `revision_unavailable`.
    """
    require_subjects(caller, [ask.user_id])
    with metrics.DecisionTimer("authzen") as count, rt.decider.reading(ask.at_least):
        decision = _answer(rt.decider, ask, roles.today())
        count(*tally([decision]))
        if tracing.TRACER is not None:
            tracing.decided([decision], "authzen")
    if ask.question is not None:
        rt.recorder.record("authzen", caller, [(ask.question, decision)])
    return decision


def evaluate_many(
    rt: Runtime,
    caller: Caller,
    items: Sequence[Ask | Invalid],
    *,
    semantic: str,
    at_least: int | None,
) -> list[Decision | Invalid]:
    """Access Evaluations: the decisions in order, all at one revision (at least
    `at_least`). An item that could not be read (Invalid) is answered with its
    error. `deny_on_first_deny` stops after the first denial (an error is one),
    `permit_on_first_permit` after the first permit: the answer then has fewer
    members than the request.

    Raises Forbidden `subject_not_allowed` (a person asking about someone else
    in any item: the whole request is refused), Unavailable.
    """
    require_subjects(caller, [a.user_id for a in items if isinstance(a, Ask)])
    answers: list[Decision | Invalid] = []
    denials: dict[str, Decision] = {}  # one Decision per reason no question could be put
    with metrics.DecisionTimer("authzen") as count, rt.decider.reading(at_least):
        today = roles.today()
        for item in items:
            if isinstance(item, Invalid):
                answer: Decision | Invalid = item
            elif item.question is None and item.denial is not None:
                answer = denials.get(item.denial) or denials.setdefault(
                    item.denial, _answer(rt.decider, item, today)
                )
            else:
                answer = _answer(rt.decider, item, today)
            answers.append(answer)
            if semantic == EXECUTE_ALL:
                continue
            allowed = isinstance(answer, Decision) and answer.allowed
            if (semantic == DENY_ON_FIRST_DENY and not allowed) or (
                semantic == PERMIT_ON_FIRST_PERMIT and allowed
            ):
                break
        count(*tally(answers))
        if tracing.TRACER is not None:
            tracing.decided(answers, "authzen")
    rt.recorder.record(
        "authzen",
        caller,
        (
            (item.question, answer)
            for item, answer in zip(items, answers, strict=False)
            if isinstance(item, Ask) and item.question is not None and isinstance(answer, Decision)
        ),
    )
    return answers


# --- searches ------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """One page of a search: the results (user ids, Targets or action names,
    by search), whether more remain, the key to resume after, and the revision
    and policy version it was decided at."""

    results: list[Any]
    more: bool
    resume_after: Key | None
    revision: int
    policy_version: int | None = None


Candidates = Callable[[Decider, Key | None, dt.date], Iterator[tuple[Key, Any]]]


def _nothing(_decider: Decider, _after: Key | None, _today: dt.date) -> Iterator[tuple[Key, Any]]:
    """No candidates: the request names nothing this service knows."""
    return iter(())


def _allowed(
    decider: Decider, after: Key | None, today: dt.date, asked: Iterable[tuple[Key, Question, Any]]
) -> Iterator[tuple[Key, Any]]:
    """(key, result) for each (key, question, result) past the cursor `after`
    whose question the decider allows, in the order given (the key order)."""
    for key, question, result in asked:
        if (after is None or key > after) and decider.decide(question, today=today).allowed:
            yield key, result


@dataclass(frozen=True)
class Search:
    """A search the caller may run: the shape of its sort key (the types of its
    members, to check a key handed back by a client) and its candidates, each
    an allowed (key, result) in key order past the cursor."""

    rt: Runtime
    key_types: tuple[type, ...]
    candidates: Candidates

    def page(self, after: Key | None, limit: int, at_least: int | None = None) -> Found:
        """Up to `limit` results past `after`, at the current revision (at
        least `at_least`). Raises Unavailable `revision_unavailable`."""
        decider = self.rt.decider
        with decider.reading(at_least) as revision:
            results: list[Any] = []
            last = after
            version = decider.policy_version
            for key, result in self.candidates(decider, after, roles.today()):
                if len(results) == limit:  # one more exists: another page
                    return Found(results, True, last, revision, version)
                results.append(result)
                last = key
        return Found(results, False, None, revision, version)


def search_subjects(rt: Runtime, caller: Caller, target: Target | None, action: str) -> Search:
    """Subject Search: the users who may perform `action` on `target`, by
    increasing user id (`target` None: nothing this service knows). Candidates
    are the users with a validated membership of the structure, each decided by
    the Decider.

    Raises Forbidden `subject_not_allowed` (a person: listing other users is for
    client applications).
    """
    if caller.client_id is None:
        raise Forbidden(
            "Listing the users who may do something is for client "
            "applications; a person may only ask about themself.",
            code="subject_not_allowed",
        )
    if target is None or applies(action, target, rt.policies.actions) is not None:
        return Search(rt, (int,), _nothing)
    found: Target = target

    def candidates(
        decider: Decider, after: Key | None, today: dt.date
    ) -> Iterator[tuple[Key, Any]]:
        asked = (
            ([uid], Question(uid, found.structure_id, found.space, action, found.service), uid)
            for uid in decider.members_of(found.structure_id)
        )
        return _allowed(decider, after, today, asked)

    return Search(rt, (int,), candidates)


def search_resources(
    rt: Runtime, caller: Caller, user_id: int | None, action: str, kind: str
) -> Search:
    """Resource Search: the resources of `kind` on which the user may perform
    `action`, as Targets. SPACE (space actions): every structure the user
    belongs to × the whole structure and each of its services × every space of
    the catalogue, ordered by structure id, service code (the whole structure
    first), space code. STRUCTURE (management actions): the user's structures,
    by id. Any other kind finds nothing; so does a `user_id` of None.

    Raises Forbidden `subject_not_allowed` (a person asking about someone else).
    """
    require_subjects(caller, [user_id])
    spaces = sorted(s.code for s in rt.policies.spaces)

    def space_candidates(
        decider: Decider, after: Key | None, today: dt.date
    ) -> Iterator[tuple[Key, Any]]:
        if user_id is None or action not in SPACE_ACTIONS:
            return iter(())
        asked = (
            (
                [sid, service or "", space],
                Question(user_id, sid, space, action, service),
                Target(sid, space, service),
            )
            for sid in decider.structures_of(user_id)
            for service in decider.scopes(sid)
            for space in spaces
        )
        return _allowed(decider, after, today, asked)

    def structure_candidates(
        decider: Decider, after: Key | None, today: dt.date
    ) -> Iterator[tuple[Key, Any]]:
        if user_id is None or action not in rt.policies.actions:
            return iter(())
        asked = (
            ([sid], Question(user_id, sid, None, action), Target(sid))
            for sid in decider.structures_of(user_id)
        )
        return _allowed(decider, after, today, asked)

    if kind == STRUCTURE:
        return Search(rt, (int,), structure_candidates)
    if kind == SPACE:
        return Search(rt, (int, str, str), space_candidates)
    return Search(rt, (int,), _nothing)


def search_actions(
    rt: Runtime, caller: Caller, user_id: int | None, target: Target | None
) -> Search:
    """Action Search: the names of the actions the user may perform on `target`
    — among consult, modify, create for a space, among the management actions
    of policies/roles.yaml (in that file's order) for a structure. Nothing when
    `user_id` or `target` is None.

    Raises Forbidden `subject_not_allowed` (a person asking about someone else).
    """
    require_subjects(caller, [user_id])

    def candidates(
        decider: Decider, after: Key | None, today: dt.date
    ) -> Iterator[tuple[Key, Any]]:
        if user_id is None or target is None:
            return iter(())
        names = SPACE_ACTIONS if target.space is not None else tuple(rt.policies.actions)
        asked = (
            ([i], Question(user_id, target.structure_id, target.space, name, target.service), name)
            for i, name in enumerate(names)
        )
        return _allowed(decider, after, today, asked)

    return Search(rt, (int,), candidates)
