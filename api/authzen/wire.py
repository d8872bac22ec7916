"""The AuthZEN 1.0 wire format: requests read into the plain values of
authz/engine/authzen.py, answers written back.

AuthZEN entities map onto the service's questions (docs/authzen.md):

- subject  `{"type": "user", "id": "<user id>"}`
- resource `{"type": "space", "id": "<structure id>/<space code>"}`, or
  `"<structure id>/<service code>/<space code>"` for one service, with an action
  named `consult`, `modify` or `create`;
  `{"type": "structure", "id": "<structure id>"}` with a management action of
  policies/roles.yaml (`structure.view`, `history.read`…).

A request that is well formed but names nothing this service knows (another
subject or resource type, an id that is not one of ours, an action that does
not apply) is a deny with its reason, or an empty search result — never an
error. A request that breaks the AuthZEN shape (a required member missing or of
the wrong JSON type) raises Invalid; routes.py answers it with 400, the status
the specification requires.

Searches are paginated by cursor: `page.next_token` is an opaque, URL-safe
token holding the sort key of the last entity returned and a fingerprint of
the request. A token replayed with a different request is refused (400
`page_token_mismatch`).

Only `context.at_least_revision` (answer from this policy revision or a newer
one, or 503) and `context.explain` (add the facts behind each decision) are
read from a request's context; `properties` are accepted and not used: the
service decides from its own records, never from attributes a caller asserts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from authz.config import Settings
from authz.engine.authzen import (
    EXECUTE_ALL,
    SEMANTICS,
    Ask,
    Found,
    Key,
    Target,
    applies,
)
from authz.engine.decisions import Decision, Question
from authz.errors import Invalid
from models import ID_MAX

USER = "user"
SPACE = "space"
STRUCTURE = "structure"

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
# zero) within the id columns' range; any other id names nothing of ours.
ID_RE = re.compile(r"[1-9][0-9]{0,9}")  # whole string: use fullmatch

SUBJECT_KEYS = ("type", "id")
RESOURCE_KEYS = ("type", "id")
ACTION_KEYS = ("name",)


# --- entities and context ----------------------------------------------------------


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


def user_id_of(subject: Mapping[str, Any]) -> int | None:
    """The user id a subject names, or None when it names no user of this
    service (another type, or an id that is not a user id). Never raises."""
    if subject.get("type") != USER:
        return None
    return record_id(subject.get("id"))


def record_id(value: Any) -> int | None:
    """The id a string names (a user or a structure), or None when it is not one."""
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        return None
    number = int(value)
    return number if number <= ID_MAX else None


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
        structure_id = record_id(value)
        if structure_id is None:
            return "resource id is not a structure id"
        return Target(structure_id)
    if kind == SPACE:
        parts = value.split("/")
        service = "/".join(parts[1:-1]) or None
        structure_id = record_id(parts[0])
        if (
            len(parts) < 2
            or structure_id is None
            or not parts[-1]
            or (len(parts) > 2 and not service)
        ):
            return (
                "resource id must be <structure id>/<space code> or "
                "<structure id>/<service code>/<space code>"
            )
        return Target(structure_id, parts[-1], service)
    return f"unknown resource type {kind!r}: expected {SPACE!r} or {STRUCTURE!r}"


def resource_of(target: Target) -> dict[str, str]:
    """The AuthZEN resource naming a target."""
    if target.space is None:
        return {"type": STRUCTURE, "id": str(target.structure_id)}
    middle = f"{target.service}/" if target.service is not None else ""
    return {"type": SPACE, "id": f"{target.structure_id}/{middle}{target.space}"}


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
    return _put(user_id, target, action.get("name", ""), management_actions)


def _put(
    user_id: int, target: Target, name: str, management_actions: Collection[str]
) -> Question | str:
    """The question of a user id, a target and an action name, or why the
    action does not apply to the target."""
    not_applicable = applies(name, target, management_actions)
    if not_applicable is not None:
        return not_applicable
    return Question(user_id, target.structure_id, target.space, name, target.service)


# --- evaluations -----------------------------------------------------------------


def evaluation(
    request: Mapping[str, Any], management_actions: Collection[str], path: str = ""
) -> Ask:
    """An evaluation request (subject, action, resource, context) read and
    mapped onto a question. `path` prefixes field names in error messages.

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
    semantic: str = options.get("evaluations_semantic", EXECUTE_ALL)
    if semantic not in SEMANTICS:
        raise _invalid(
            "options.evaluations_semantic",
            f"Must be one of: {', '.join(SEMANTICS)}.",
            "invalid_field",
        )
    return semantic


def is_batch(request: Mapping[str, Any]) -> bool:
    """Whether an evaluations request has `evaluations` (absent or empty: it is a
    single evaluation, and so is the answer)."""
    items = request.get("evaluations")
    return not (items is None or (isinstance(items, list) and not items))


@dataclass(frozen=True)
class Evaluations:
    """An evaluations request, read: its items (an Invalid for an item that
    could not be read: it is answered with its error), the semantic, and the
    highest revision any context asks for."""

    items: list[Ask | Invalid]
    semantic: str
    at_least: int | None


def evaluations(
    request: Mapping[str, Any], management_actions: Collection[str], batch_max: int
) -> Evaluations:
    """An evaluations request with `evaluations` (see is_batch), each item
    completed with the top-level defaults.

    Raises Invalid (malformed top level, more than `batch_max` items:
    `batch_too_large`).
    """
    items = request.get("evaluations")
    if not isinstance(items, list):
        raise _invalid("evaluations", "Not a valid list.", "invalid_field")
    if len(items) > batch_max:
        raise Invalid(f"At most {batch_max} evaluations per request.", code="batch_too_large")
    semantic = semantic_of(request.get("options"))
    defaults = {
        "subject": _default(request, "subject", SUBJECT_KEYS),
        "action": _default(request, "action", ACTION_KEYS),
        "resource": _default(request, "resource", RESOURCE_KEYS),
        "context": context_of(request.get("context")) or None,
    }
    # The context every item without its own gets (checked above).
    context = defaults["context"] or {}
    at_least, explain = _at_least(context), bool(context.get("explain", False))
    parsed: list[Ask | Invalid] = []
    memo: _Memo = ({}, {})
    for i, item in enumerate(items):
        asked = _complete(item, management_actions, at_least, explain, memo)
        if asked is not None:
            parsed.append(asked)
            continue
        path = f"evaluations[{i}]."
        try:
            parsed.append(evaluation(with_defaults(item, defaults, path), management_actions, path))
        except Invalid as error:
            parsed.append(error)
    wanted = [a.at_least for a in parsed if isinstance(a, Ask)]
    wanted.append(at_least)
    return Evaluations(parsed, semantic, max((w for w in wanted if w is not None), default=None))


def _denial(
    subject: Mapping[str, Any],
    action: Mapping[str, Any],
    resource: Mapping[str, Any],
    management_actions: Collection[str],
) -> str:
    """Why three entities that put no question put none."""
    asked = to_question(subject, action, resource, management_actions)
    assert isinstance(asked, str)  # noqa: S101 - the caller's precondition
    return asked


# What a batch's subjects and resources were read as: user ids by subject id,
# targets (or why none) by (resource type, resource id).
_Memo = tuple[dict[str, int | None], dict[tuple[str, str], Target | str]]


def _complete(
    item: object,
    management_actions: Collection[str],
    at_least: int | None,
    explain: bool,
    memo: _Memo,
) -> Ask | None:
    """The Ask of an item that is complete by itself — subject, action and
    resource objects with their required members as strings, `properties`
    absent or an object, no context of its own — read without copying it; None
    for any other item, which `evaluation(with_defaults(...))` reads. For a
    complete item the defaults change nothing but the context (`at_least`,
    `explain`: the top-level context's), so both give the same Ask
    (tests/test_authzen_batch_fast.py)."""
    if type(item) is not dict:
        return None
    subject, action, resource = item.get("subject"), item.get("action"), item.get("resource")
    if (
        type(subject) is not dict
        or type(action) is not dict
        or type(resource) is not dict
        or item.get("context") is not None
    ):
        return None
    subject_type, subject_id, name = subject.get("type"), subject.get("id"), action.get("name")
    resource_type, resource_id = resource.get("type"), resource.get("id")
    if (
        type(subject_type) is not str
        or type(subject_id) is not str
        or type(name) is not str
        or type(resource_type) is not str
        or type(resource_id) is not str
        or ("properties" in subject and type(subject["properties"]) is not dict)
        or ("properties" in action and type(action["properties"]) is not dict)
        or ("properties" in resource and type(resource["properties"]) is not dict)
    ):
        return None
    if subject_type != USER:
        return Ask(
            None, _denial(subject, action, resource, management_actions), None, at_least, explain
        )
    # to_question, with each subject and resource of the batch read once
    users, targets = memo
    user_id = (
        users[subject_id]
        if subject_id in users
        else users.setdefault(subject_id, record_id(subject_id))
    )
    if user_id is None:
        return Ask(None, "subject id is not a user id", None, at_least, explain)
    key = (resource_type, resource_id)
    target = targets[key] if key in targets else targets.setdefault(key, target_of(resource))
    asked = target if isinstance(target, str) else _put(user_id, target, name, management_actions)
    if isinstance(asked, Question):
        return Ask(asked, None, user_id, at_least, explain)
    return Ask(None, asked, user_id, at_least, explain)


def decision(answer: Decision | Invalid) -> dict[str, Any]:
    """An AuthZEN decision: `decision`, and a context with the revision and the
    rule that allowed it or the reason it was denied (and the facts, when
    `context.explain` was asked for); for an evaluation that could not be made,
    a denial carrying its error."""
    if isinstance(answer, Invalid):
        return {
            "decision": False,
            "context": {"error": {"status": 400, "code": answer.code, "message": answer.detail}},
        }
    # Decision.as_dict(explain=True) without `allowed` (an explanation exists
    # only when asked for), in its key order.
    context: dict[str, Any] = {"revision": answer.revision, "policy_version": answer.policy_version}
    if answer.allowed:
        context["rule"] = answer.rule
    else:
        context["reason"] = answer.reason
    if answer.explanation is not None:
        context["explanation"] = answer.explanation
    return {"decision": answer.allowed, "context": context}


def decisions(answers: Sequence[Decision | Invalid]) -> list[dict[str, Any]]:
    """`decision()` of each answer, in order; an answer the engine shares
    between several evaluations (a denial for the same reason) is written once."""
    written: dict[int, dict[str, Any]] = {}
    out = []
    for answer in answers:
        found = written.get(id(answer))
        if found is None:
            found = written[id(answer)] = decision(answer)
        out.append(found)
    return out


# --- searches ------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectSearch:
    """A subject search, read: the target (None: nothing this service knows),
    the action, and the revision asked for."""

    target: Target | None
    action: str
    at_least: int | None


def subject_search(request: Mapping[str, Any]) -> SubjectSearch:
    """Raises Invalid (malformed subject, action, resource or context)."""
    subject = entity(request.get("subject"), "subject", ("type",))
    action = entity(request.get("action"), "action", ACTION_KEYS)
    resource = entity(request.get("resource"), "resource", RESOURCE_KEYS)
    context = context_of(request.get("context"))
    target = target_of(resource)
    if subject["type"] != USER or isinstance(target, str):
        return SubjectSearch(None, action["name"], _at_least(context))
    return SubjectSearch(target, action["name"], _at_least(context))


@dataclass(frozen=True)
class ResourceSearch:
    """A resource search, read: the subject's user id (None: no user of ours),
    the action, the resource type searched for, and the revision asked for."""

    user_id: int | None
    action: str
    kind: str
    at_least: int | None


def resource_search(request: Mapping[str, Any]) -> ResourceSearch:
    """Raises Invalid (malformed subject, action, resource or context)."""
    subject = entity(request.get("subject"), "subject", SUBJECT_KEYS)
    action = entity(request.get("action"), "action", ACTION_KEYS)
    resource = entity(request.get("resource"), "resource", ("type",))
    context = context_of(request.get("context"))
    return ResourceSearch(user_id_of(subject), action["name"], resource["type"], _at_least(context))


@dataclass(frozen=True)
class ActionSearch:
    """An action search, read: the subject's user id and the target (None:
    nothing of ours), and the revision asked for."""

    user_id: int | None
    target: Target | None
    at_least: int | None


def action_search(request: Mapping[str, Any]) -> ActionSearch:
    """Raises Invalid (malformed subject, resource or context)."""
    subject = entity(request.get("subject"), "subject", SUBJECT_KEYS)
    resource = entity(request.get("resource"), "resource", RESOURCE_KEYS)
    context = context_of(request.get("context"))
    target = target_of(resource)
    return ActionSearch(
        user_id_of(subject), target if isinstance(target, Target) else None, _at_least(context)
    )


@dataclass(frozen=True)
class Page:
    """Where a search page starts (after `after`; None: from the beginning), how
    many results it may hold, and the request's fingerprint (for the token)."""

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
        and all(type(v) is t for v, t in zip(after, key_types, strict=True))
    ):
        raise bad
    return after


def user_entity(user_id: int) -> dict[str, str]:
    """A subject search result."""
    return {"type": USER, "id": str(user_id)}


def action_entity(name: str) -> dict[str, str]:
    """An action search result."""
    return {"name": name}


def results(found: Found, page: Page, entity_of: Callable[[Any], dict[str, str]]) -> dict[str, Any]:
    """A search response: the page (`next_token`: "" on the last page), the
    revision the page was decided at, and the results as AuthZEN entities."""
    next_token = encode_token(found.resume_after, page.fingerprint) if found.more else ""
    return {
        "page": {"next_token": next_token, "count": len(found.results)},
        "context": {"revision": found.revision, "policy_version": found.policy_version},
        "results": [entity_of(r) for r in found.results],
    }


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
