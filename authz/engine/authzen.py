"""The OpenID AuthZEN Authorization API 1.0, answered by the Decider.

AuthZEN entities map onto the service's questions (docs/authzen.md):

- subject  `{"type": "user", "id": "<user id>"}`
- resource `{"type": "space", "id": "<structure id>/<space code>"}`, or
  `"<structure id>/<service code>/<space code>"` for one service, with an action
  named `consult`, `modify` or `create`;
  `{"type": "structure", "id": "<structure id>"}` with a management action of
  policies/roles.yaml (`structure.view`, `history.read`…).

Every decision is `Decider.decide` on an `authz.engine.decisions.Question`; nothing is
decided here. A request that is well formed but names nothing this service
knows (another subject or resource type, an id that is not one of ours, an
action that does not apply) is a deny with its reason, or an empty search
result — never an error. A request that breaks the AuthZEN shape (a required
member missing or of the wrong JSON type) raises Invalid; the HTTP layer
answers it with 400, the status the specification requires.

Searches are paginated by cursor: `page.next_token` is an opaque, URL-safe
token holding the sort key of the last entity returned and a fingerprint of
the request. The next page is computed at the revision current when it is
asked for, strictly after that key: nothing is repeated, and changes made
between pages show up in the pages not yet read (the specification allows
results to be omitted or repeated between pages). A token replayed with a
different request is refused (400 `page_token_mismatch`).

Only `context.at_least_revision` (answer from this policy revision or a newer
one, or 503) and `context.explain` (add the facts behind each decision) are
read from a request's context; `properties` are accepted and not used: the
service decides from its own records, never from attributes a caller asserts.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import roles
from ..config import Settings
from ..errors import Forbidden, Invalid
from ..runtime import Runtime
from .checks import Caller
from .decisions import Decider, Question
from .policy import SPACE_ACTIONS

USER = "user"
SPACE = "space"
STRUCTURE = "structure"

EXECUTE_ALL = "execute_all"
DENY_ON_FIRST_DENY = "deny_on_first_deny"
PERMIT_ON_FIRST_PERMIT = "permit_on_first_permit"
SEMANTICS = (EXECUTE_ALL, DENY_ON_FIRST_DENY, PERMIT_ON_FIRST_PERMIT)

# Paths of the HTTPS binding (the specification's defaults), by metadata name.
ENDPOINTS = {
    "access_evaluation_endpoint": "/access/v1/evaluation",
    "access_evaluations_endpoint": "/access/v1/evaluations",
    "search_subject_endpoint": "/access/v1/search/subject",
    "search_resource_endpoint": "/access/v1/search/resource",
    "search_action_endpoint": "/access/v1/search/action",
}
METADATA_PATH = "/.well-known/authzen-configuration"

# Ids of users and structures: canonical decimal integers (no sign, no leading
# zero), small enough for a BIGINT.
ID_RE = re.compile(r"[1-9][0-9]{0,17}")  # whole string: use fullmatch

SUBJECT_KEYS = ("type", "id")
RESOURCE_KEYS = ("type", "id")
ACTION_KEYS = ("name",)

Key = list[Any]


# --- reading the request --------------------------------------------------------


def _invalid(path: str, message: str, code: str) -> Invalid:
    """An Invalid naming the faulty member by its path (`evaluations[1].resource`)."""
    return Invalid(f"{path}: {message}", code=code, errors={path: [message]})


def entity(
    raw: object, path: str, required: Sequence[str], *, partial: bool = False
) -> dict[str, Any]:
    """`raw` checked as an AuthZEN entity: an object whose `required` members
    are strings and whose `properties`, if any, is an object. `partial`: the
    required members may be absent (top-level defaults of an evaluations
    request). A member set to null counts as absent.

    Raises Invalid `missing_field` (absent entity or member), `invalid_field`
    (not an object, member not a string, properties not an object).
    """
    if raw is None:
        raise _invalid(path, "Missing data for required field.", "missing_field")
    if not isinstance(raw, Mapping):
        raise _invalid(path, "Must be an object.", "invalid_field")
    for key in required:
        value = raw.get(key)
        if value is None:
            if not partial:
                raise _invalid(f"{path}.{key}", "Missing data for required field.", "missing_field")
        elif not isinstance(value, str):
            raise _invalid(f"{path}.{key}", "Not a valid string.", "invalid_field")
    properties = raw.get("properties")
    if properties is not None and not isinstance(properties, Mapping):
        raise _invalid(f"{path}.properties", "Must be an object.", "invalid_field")
    return {k: v for k, v in raw.items() if v is not None}


def context_of(raw: object, path: str = "context") -> Mapping[str, Any]:
    """The request context (empty when absent).

    Raises Invalid `invalid_field` (not an object, `at_least_revision` not a
    non-negative integer, `explain` not a boolean).
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _invalid(path, "Must be an object.", "invalid_field")
    at_least = raw.get("at_least_revision")
    if at_least is not None and (
        isinstance(at_least, bool) or not isinstance(at_least, int) or at_least < 0
    ):
        raise _invalid(
            f"{path}.at_least_revision", "Must be a non-negative integer.", "invalid_field"
        )
    explain = raw.get("explain")
    if explain is not None and not isinstance(explain, bool):
        raise _invalid(f"{path}.explain", "Not a valid boolean.", "invalid_field")
    return raw


def _at_least(context: Mapping[str, Any]) -> int | None:
    """The revision a checked context requires, if any."""
    return context.get("at_least_revision")


# --- mapping entities onto questions -------------------------------------------


@dataclass(frozen=True)
class Target:
    """What an AuthZEN resource names: a space of a structure (on one service or
    all of them), or the structure itself (space None: management actions)."""

    structure_id: int
    space: str | None = None
    service: str | None = None

    @property
    def resource(self) -> dict[str, str]:
        """The AuthZEN resource naming this target."""
        if self.space is None:
            return {"type": STRUCTURE, "id": str(self.structure_id)}
        middle = f"{self.service}/" if self.service is not None else ""
        return {"type": SPACE, "id": f"{self.structure_id}/{middle}{self.space}"}


def user_id_of(subject: Mapping[str, Any]) -> int | None:
    """The user id a subject names, or None when it names no user of this
    service (another type, or an id that is not a user id). Never raises."""
    if subject.get("type") != USER:
        return None
    value = subject.get("id")
    return int(value) if isinstance(value, str) and ID_RE.fullmatch(value) else None


def target_of(resource: Mapping[str, Any]) -> Target | str:
    """The target a resource names, or why it names none (a deny reason).

    A space id is `<structure>/<space>` or `<structure>/<service>/<space>`; a
    service code may itself contain "/", so the first segment is the structure,
    the last the space and whatever lies between the service. Never raises.
    """
    kind, value = resource.get("type"), resource.get("id")
    if not isinstance(value, str):
        return "resource id missing"
    if kind == STRUCTURE:
        if not ID_RE.fullmatch(value):
            return "resource id is not a structure id"
        return Target(int(value))
    if kind == SPACE:
        parts = value.split("/")
        service = "/".join(parts[1:-1]) or None
        if (
            len(parts) < 2
            or not ID_RE.fullmatch(parts[0])
            or not parts[-1]
            or (len(parts) > 2 and not service)
        ):
            return (
                "resource id must be <structure id>/<space code> or "
                "<structure id>/<service code>/<space code>"
            )
        return Target(int(parts[0]), parts[-1], service)
    return f"unknown resource type {kind!r}: expected {SPACE!r} or {STRUCTURE!r}"


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


def to_question(
    subject: Mapping[str, Any],
    action: Mapping[str, Any],
    resource: Mapping[str, Any],
    management_actions: Collection[str],
) -> Question | str:
    """The question three checked entities ask, or why they ask none (a deny
    reason). Never raises."""
    if subject.get("type") != USER:
        return f"unknown subject type {subject.get('type')!r}: expected {USER!r}"
    user_id = user_id_of(subject)
    if user_id is None:
        return "subject id is not a user id"
    target = target_of(resource)
    if isinstance(target, str):
        return target
    name = action.get("name", "")
    not_applicable = applies(name, target, management_actions)
    if not_applicable is not None:
        return not_applicable
    return Question(user_id, target.structure_id, target.space, name, target.service)


# --- evaluations -----------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """One checked evaluation: the question for the decider, or the reason none
    can be put (a deny)."""

    question: Question | None
    denial: str | None
    user_id: int | None  # the subject's user id, for the caller's right to ask
    at_least: int | None
    explain: bool


def parse_evaluation(
    request: Mapping[str, Any], management_actions: Collection[str], path: str = ""
) -> Ask:
    """Check an evaluation request (subject, action, resource, context) and map
    it onto a question. `path` prefixes field names in error messages.

    Raises Invalid `missing_field` / `invalid_field`.
    """
    subject = entity(request.get("subject"), f"{path}subject", SUBJECT_KEYS)
    action = entity(request.get("action"), f"{path}action", ACTION_KEYS)
    resource = entity(request.get("resource"), f"{path}resource", RESOURCE_KEYS)
    context = context_of(request.get("context"), f"{path}context")
    asked = to_question(subject, action, resource, management_actions)
    return Ask(
        question=asked if isinstance(asked, Question) else None,
        denial=asked if isinstance(asked, str) else None,
        user_id=user_id_of(subject),
        at_least=_at_least(context),
        explain=bool(context.get("explain", False)),
    )


def _require_subjects(caller: Caller, user_ids: Collection[int | None]) -> None:
    """Raises Forbidden `subject_not_allowed` when a person asks about another
    user (ids that name no user reveal nothing and are let through: denied)."""
    if any(uid is not None and not caller.may_ask_about(uid) for uid in user_ids):
        raise Forbidden(
            "A user may only ask about their own rights; other systems "
            "ask with a client application's API key.",
            code="subject_not_allowed",
        )


def _answer(decider: Decider, ask: Ask, today: dt.date) -> dict[str, Any]:
    """The AuthZEN decision for one checked evaluation: `decision`, and a
    context with the revision and the rule that allowed it or the reason it was
    denied (and the facts, when `context.explain` was asked for)."""
    if ask.question is None:
        return {"decision": False, "context": {"revision": decider.revision, "reason": ask.denial}}
    decision = decider.decide(ask.question, today=today, explain=ask.explain)
    context = decision.as_dict(explain=ask.explain)
    return {"decision": context.pop("allowed"), "context": context}


def _error(error: Invalid) -> dict[str, Any]:
    """A denied evaluation carrying the error that prevented it."""
    return {
        "decision": False,
        "context": {"error": {"status": 400, "code": error.code, "message": error.detail}},
    }


def evaluate(rt: Runtime, caller: Caller, request: Mapping[str, Any]) -> dict[str, Any]:
    """Access Evaluation: one decision, `{"decision": bool, "context": {...}}`.

    Raises Invalid (malformed request), Forbidden `subject_not_allowed` (a
    person asking about someone else), Unavailable `revision_unavailable`.
    """
    ask = parse_evaluation(request, rt.policies.actions)
    _require_subjects(caller, [ask.user_id])
    with rt.decider.reading(ask.at_least):
        return _answer(rt.decider, ask, roles.today())


def with_defaults(item: object, defaults: Mapping[str, Any], path: str) -> dict[str, Any]:
    """One member of `evaluations` completed with the request's top-level
    values. An entity given in the item replaces the default entity as a whole,
    except that a required member (`type`, `id`, `name`) it lacks is taken from
    the default (certification scenario, "default value merging"). The item's
    context replaces the default context.

    Raises Invalid `invalid_field` (the item is not an object).
    """
    if not isinstance(item, Mapping):
        raise _invalid(path.rstrip("."), "Must be an object.", "invalid_field")
    merged: dict[str, Any] = {}
    for key, required in (
        ("subject", SUBJECT_KEYS),
        ("action", ACTION_KEYS),
        ("resource", RESOURCE_KEYS),
    ):
        own, default = item.get(key), defaults.get(key)
        if own is None:
            merged[key] = default
        elif isinstance(own, Mapping) and isinstance(default, Mapping):
            merged[key] = {
                **{
                    k: default[k]
                    for k in required
                    if own.get(k) is None and default.get(k) is not None
                },
                **{k: v for k, v in own.items() if v is not None},
            }
        else:
            merged[key] = own
    own_context = item.get("context")
    merged["context"] = own_context if own_context is not None else defaults.get("context")
    return merged


def _default(
    request: Mapping[str, Any], key: str, required: Sequence[str]
) -> dict[str, Any] | None:
    """A top-level entity of an evaluations request, a default for its items.

    Raises Invalid `invalid_field` (not an object, a member of the wrong type).
    """
    raw = request.get(key)
    return None if raw is None else entity(raw, key, required, partial=True)


def semantic_of(options: object) -> str:
    """`options.evaluations_semantic`, `execute_all` when absent.

    Raises Invalid `invalid_field` (options not an object, unknown semantic).
    """
    if options is None:
        return EXECUTE_ALL
    if not isinstance(options, Mapping):
        raise _invalid("options", "Must be an object.", "invalid_field")
    semantic = options.get("evaluations_semantic", EXECUTE_ALL)
    if semantic not in SEMANTICS:
        raise _invalid(
            "options.evaluations_semantic",
            f"Must be one of: {', '.join(SEMANTICS)}.",
            "invalid_field",
        )
    return semantic


def evaluate_many(rt: Runtime, caller: Caller, request: Mapping[str, Any]) -> dict[str, Any]:
    """Access Evaluations: `{"evaluations": [decision, ...]}` in request order,
    all at one revision. Without `evaluations` (absent or empty) the request is
    a single evaluation and so is the answer.

    An item that cannot be evaluated (a required entity missing even after the
    defaults, a member of the wrong type) is denied with
    `context.error = {status: 400, code, message}`; the others are answered.
    `deny_on_first_deny` stops after the first denial (an error is one),
    `permit_on_first_permit` after the first permit: the answer then has fewer
    members than the request.

    Raises Invalid (malformed top level, more than AUTHZ_BATCH_MAX items),
    Forbidden `subject_not_allowed` (a person asking about someone else in any
    item: the whole request is refused), Unavailable `revision_unavailable`.
    """
    items = request.get("evaluations")
    if items is None or (isinstance(items, list) and not items):
        return evaluate(rt, caller, request)
    if not isinstance(items, list):
        raise _invalid("evaluations", "Not a valid list.", "invalid_field")
    if len(items) > rt.settings.batch_max:
        raise Invalid(
            f"At most {rt.settings.batch_max} evaluations per request.", code="batch_too_large"
        )
    semantic = semantic_of(request.get("options"))
    defaults = {
        "subject": _default(request, "subject", SUBJECT_KEYS),
        "action": _default(request, "action", ACTION_KEYS),
        "resource": _default(request, "resource", RESOURCE_KEYS),
        "context": context_of(request.get("context")) or None,
    }
    parsed: list[Ask | Invalid] = []
    for i, item in enumerate(items):
        path = f"evaluations[{i}]."
        try:
            parsed.append(
                parse_evaluation(with_defaults(item, defaults, path), rt.policies.actions, path)
            )
        except Invalid as error:
            parsed.append(error)
    asks = [p for p in parsed if isinstance(p, Ask)]
    _require_subjects(caller, [a.user_id for a in asks])
    wanted = [a.at_least for a in asks] + [_at_least(defaults["context"] or {})]
    at_least = max((w for w in wanted if w is not None), default=None)
    answers: list[dict[str, Any]] = []
    with rt.decider.reading(at_least):
        today = roles.today()
        for one in parsed:
            answer = _error(one) if isinstance(one, Invalid) else _answer(rt.decider, one, today)
            answers.append(answer)
            if (semantic == DENY_ON_FIRST_DENY and not answer["decision"]) or (
                semantic == PERMIT_ON_FIRST_PERMIT and answer["decision"]
            ):
                break
    return {"evaluations": answers}


# --- searches ------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """Where a search page starts (after `after`; None: from the beginning) and
    how many results it may hold."""

    after: Key | None
    limit: int
    fingerprint: str


def fingerprint(request: Mapping[str, Any]) -> str:
    """A digest of everything in a search request but `page.token`: a token is
    only valid with the request that produced it."""
    page = request.get("page")
    if isinstance(page, Mapping):
        page = {k: v for k, v in page.items() if k != "token"}
    rest = {k: v for k, v in request.items() if k != "page"}
    canonical = json.dumps([rest, page], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def encode_token(after: Key | None, digest: str) -> str:
    """The opaque `next_token` resuming after the sort key `after`."""
    raw = json.dumps({"v": 1, "after": after, "q": digest}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def page_of(request: Mapping[str, Any], settings: Settings, key_types: Sequence[type]) -> Page:
    """The page a search request asks for. `limit` defaults to AUTHZ_PAGE_SIZE
    and is capped at AUTHZ_PAGE_SIZE_MAX; `key_types` is the shape of the sort
    key a token of this search holds.

    Raises Invalid `invalid_field` (page not an object, limit not a
    non-negative integer), `invalid_page_token` (not one of ours),
    `page_token_mismatch` (issued for a different request).
    """
    raw = request.get("page")
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _invalid("page", "Must be an object.", "invalid_field")
    limit = raw.get("limit")
    if limit is None:
        limit = settings.page_size
    elif isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise _invalid("page.limit", "Must be a non-negative integer.", "invalid_field")
    digest = fingerprint(request)
    token = raw.get("token")
    after = None
    if token:  # an empty token, like none, starts from the beginning
        after = _decode_token(token, digest, key_types)
    return Page(after=after, limit=min(limit, settings.page_size_max), fingerprint=digest)


def _decode_token(token: object, digest: str, key_types: Sequence[type]) -> Key | None:
    """The sort key a token resumes after (None: from the beginning).

    Raises Invalid `invalid_page_token`, `page_token_mismatch`.
    """
    bad = Invalid(
        "page.token is not a token issued by this search.",
        code="invalid_page_token",
        errors={"page.token": ["Unknown token."]},
    )
    if not isinstance(token, str) or len(token) > 2048:
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("q"), str):
        raise bad
    if data["q"] != digest:
        raise Invalid(
            "page.token was issued for a different request: send the same "
            "subject, action, resource, context and page.limit as the first "
            "request, or start again without a token.",
            code="page_token_mismatch",
            errors={"page.token": ["Other request."]},
        )
    after = data.get("after")
    if after is None:
        return None
    if not (
        isinstance(after, list)
        and len(after) == len(key_types)
        and all(type(v) is t for v, t in zip(after, key_types))
    ):
        raise bad
    return after


def _take(
    found: Iterator[tuple[Key, dict[str, str]]], page: Page
) -> tuple[list[dict[str, str]], str]:
    """Up to `page.limit` results of `found` (allowed entities past the cursor,
    in key order) and the `next_token` ("" when nothing is left)."""
    results: list[dict[str, str]] = []
    last = page.after
    for key, found_entity in found:
        if len(results) == page.limit:  # one more exists: another page
            return results, encode_token(last, page.fingerprint)
        results.append(found_entity)
        last = key
    return results, ""


def _search(
    rt: Runtime,
    request: Mapping[str, Any],
    key_types: Sequence[type],
    candidates: Callable[[Decider, Page, dt.date], Iterator[tuple[Key, dict[str, str]]]],
) -> dict[str, Any]:
    """Run one search page at the current revision (at least the one asked for)."""
    page = page_of(request, rt.settings, key_types)
    with rt.decider.reading(_at_least(context_of(request.get("context")))) as revision:
        results, next_token = _take(candidates(rt.decider, page, roles.today()), page)
    return {
        "page": {"next_token": next_token, "count": len(results)},
        "context": {"revision": revision},
        "results": results,
    }


def _nothing(decider: Decider, page: Page, today: dt.date) -> Iterator[tuple[Key, dict[str, str]]]:
    """No candidates: the request names nothing this service knows."""
    return iter(())


def _past(key: Key, page: Page) -> bool:
    """Whether `key` comes after the page's cursor."""
    return page.after is None or key > page.after


def search_subjects(rt: Runtime, caller: Caller, request: Mapping[str, Any]) -> dict[str, Any]:
    """Subject Search: the users who may perform the action on the resource,
    by increasing user id. Candidates are the users with a validated
    membership of the structure, each decided by the Decider.

    Raises Invalid (malformed request or page), Forbidden `subject_not_allowed`
    (a person: listing other users is for client applications),
    Unavailable `revision_unavailable`.
    """
    subject = entity(request.get("subject"), "subject", ("type",))
    action = entity(request.get("action"), "action", ACTION_KEYS)
    resource = entity(request.get("resource"), "resource", RESOURCE_KEYS)
    context_of(request.get("context"))
    if caller.client_id is None:
        raise Forbidden(
            "Listing the users who may do something is for client "
            "applications; a person may only ask about themself.",
            code="subject_not_allowed",
        )
    target = target_of(resource)
    name = action["name"]
    if (
        subject["type"] != USER
        or isinstance(target, str)
        or applies(name, target, rt.policies.actions) is not None
    ):
        return _search(rt, request, (int,), _nothing)
    found: Target = target

    def candidates(
        decider: Decider, page: Page, today: dt.date
    ) -> Iterator[tuple[Key, dict[str, str]]]:
        for uid in decider.members_of(found.structure_id):
            key = [uid]
            if (
                _past(key, page)
                and decider.decide(
                    Question(uid, found.structure_id, found.space, name, found.service), today=today
                ).allowed
            ):
                yield key, {"type": USER, "id": str(uid)}

    return _search(rt, request, (int,), candidates)


def search_resources(rt: Runtime, caller: Caller, request: Mapping[str, Any]) -> dict[str, Any]:
    """Resource Search: the resources of the asked type on which the subject
    may perform the action. Spaces (space actions): every structure the user
    belongs to × the whole structure and each of its services × every space of
    the catalogue, ordered by structure id, service code (the whole structure
    first), space code. Structures (management actions): the user's
    structures, by id.

    Raises Invalid (malformed request or page), Forbidden `subject_not_allowed`
    (a person asking about someone else), Unavailable `revision_unavailable`.
    """
    subject = entity(request.get("subject"), "subject", SUBJECT_KEYS)
    action = entity(request.get("action"), "action", ACTION_KEYS)
    resource = entity(request.get("resource"), "resource", ("type",))
    context_of(request.get("context"))
    user_id = user_id_of(subject)
    _require_subjects(caller, [user_id])
    name, kind = action["name"], resource["type"]
    spaces = sorted(s.code for s in rt.policies.spaces)

    def space_candidates(
        decider: Decider, page: Page, today: dt.date
    ) -> Iterator[tuple[Key, dict[str, str]]]:
        if user_id is None or name not in SPACE_ACTIONS:
            return
        for sid in decider.structures_of(user_id):
            for service in decider.scopes(sid):
                for space in spaces:
                    key = [sid, service or "", space]
                    if (
                        _past(key, page)
                        and decider.decide(
                            Question(user_id, sid, space, name, service), today=today
                        ).allowed
                    ):
                        yield key, Target(sid, space, service).resource

    def structure_candidates(
        decider: Decider, page: Page, today: dt.date
    ) -> Iterator[tuple[Key, dict[str, str]]]:
        if user_id is None or name not in rt.policies.actions:
            return
        for sid in decider.structures_of(user_id):
            key = [sid]
            if (
                _past(key, page)
                and decider.decide(Question(user_id, sid, None, name), today=today).allowed
            ):
                yield key, Target(sid).resource

    if kind == STRUCTURE:
        return _search(rt, request, (int,), structure_candidates)
    if kind == SPACE:
        return _search(rt, request, (int, str, str), space_candidates)
    return _search(rt, request, (int,), _nothing)


def search_actions(rt: Runtime, caller: Caller, request: Mapping[str, Any]) -> dict[str, Any]:
    """Action Search: the actions the subject may perform on the resource —
    among consult, modify, create for a space, among the management actions of
    policies/roles.yaml (in that file's order) for a structure.

    Raises Invalid (malformed request or page), Forbidden `subject_not_allowed`
    (a person asking about someone else), Unavailable `revision_unavailable`.
    """
    subject = entity(request.get("subject"), "subject", SUBJECT_KEYS)
    resource = entity(request.get("resource"), "resource", RESOURCE_KEYS)
    context_of(request.get("context"))
    user_id = user_id_of(subject)
    _require_subjects(caller, [user_id])
    target = target_of(resource)

    def candidates(
        decider: Decider, page: Page, today: dt.date
    ) -> Iterator[tuple[Key, dict[str, str]]]:
        if user_id is None or not isinstance(target, Target):
            return
        names = SPACE_ACTIONS if target.space is not None else tuple(rt.policies.actions)
        for i, name in enumerate(names):
            key = [i]
            if (
                _past(key, page)
                and decider.decide(
                    Question(user_id, target.structure_id, target.space, name, target.service),
                    today=today,
                ).allowed
            ):
                yield key, {"name": name}

    return _search(rt, request, (int,), candidates)


# --- discovery -----------------------------------------------------------------


def metadata(base_url: str) -> dict[str, str]:
    """The PDP metadata document (`/.well-known/authzen-configuration`): the
    service's public base URL as `policy_decision_point` and every endpoint as
    an absolute URL under it. Never raises."""
    base = base_url.rstrip("/")
    return {
        "policy_decision_point": base,
        **{name: f"{base}{path}" for name, path in ENDPOINTS.items()},
    }
