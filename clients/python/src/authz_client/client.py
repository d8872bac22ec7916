"""The HTTP client: pooled connections, timeouts, retries with back-off on 503
and connection errors, fail-closed decisions, and read-your-writes."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

import httpx

if TYPE_CHECKING:
    from .cache import DecisionCache

REVISION_HEADER = "Authz-Revision"
# Connection errors and these statuses are retried (503: the database or the
# asked revision is not there yet; 502 / 504: a proxy in front of the service).
RETRIED_STATUSES = frozenset({502, 503, 504})


class AuthzError(Exception):
    """The service could not give an answer (down, refused the request, or
    answered something unexpected). `status` and `code` are the problem's when
    the service answered one (docs/clients.md)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class ChangesGone(AuthzError):
    """410 from the change feed: the log no longer reaches the asked revision."""


@dataclass(frozen=True)
class Question:
    """May `user_id` do `action` on `space` of `structure_id` (`service`)?
    `space` None: `action` is a management action on the structure."""

    user_id: int
    structure_id: int
    space: str | None
    action: str
    service: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "structure_id": self.structure_id,
            "service": self.service,
            "space": self.space,
            "action": self.action,
        }


@dataclass(frozen=True)
class Decision:
    """An answer. `allowed` is True only when the service said so; `error` says
    why a decision was denied without the service deciding (fail-closed)."""

    allowed: bool
    revision: int | None = None
    rule: str | None = None
    reason: str | None = None
    policy_version: int | None = None
    error: str | None = None
    cached: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __bool__(self) -> bool:
        return self.allowed

    @classmethod
    def failed(cls, error: str) -> Decision:
        return cls(False, reason=f"authorization service unavailable: {error}", error=error)


class AuthzClient:
    """One client per application process; it is thread-safe and keeps a pool of
    connections (close it, or use it as a context manager).

    `api_key`: the client application's key (`authz clients create`), sent as
    a bearer token; `token` per call for writes made in a person's name.

    Decisions (`check`, `check_many`, `evaluate`, `evaluate_many`) fail closed:
    any error (service down after the retries, timeout, unexpected answer) is a
    denied Decision with `error` set, never an allow. `raise_on_error=True`
    raises AuthzError instead. Other reads (permissions, searches, the change
    feed) and writes always raise AuthzError: none of them can turn into an allow.

    `cache`: a DecisionCache, which this client starts following the change
    feed with (close the client to stop it).

    Read-your-writes: the client remembers the highest revision it has seen
    (writes' `Authz-Revision` header, decisions' revision, `observe`) and asks
    every decision at least at that revision, on whichever worker answers.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 2.0,
        connect_timeout: float = 1.0,
        retries: int = 2,
        backoff: float = 0.1,
        backoff_max: float = 2.0,
        raise_on_error: bool = False,
        read_your_writes: bool = True,
        cache: DecisionCache | None = None,
        max_connections: int = 20,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.raise_on_error = raise_on_error
        self.read_your_writes = read_your_writes
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.cache = cache
        self._api_key = api_key
        self._revision = 0
        self._lock = threading.Lock()
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            headers={"Accept": "application/json"},
        )
        if cache is not None:
            cache.follow(self)

    # --- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        if self.cache is not None:
            self.cache.stop()
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- revisions ---------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The highest policy revision this client has seen."""
        return self._revision

    def observe(self, revision: int | None) -> None:
        """Remember a revision (e.g. one a write made elsewhere returned): later
        decisions are taken at least at it."""
        if revision is not None:
            with self._lock:
                self._revision = max(self._revision, int(revision))

    def _at_least(self, asked: int | None) -> int | None:
        floor = self._revision if self.read_your_writes else 0
        highest = max(asked or 0, floor)
        return highest or None

    # --- HTTP --------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        token: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Call the service (with retries) and return the decoded JSON answer
        (None when empty). A write's `Authz-Revision` is remembered. `token`: a
        person's bearer token instead of the API key.

        Raises AuthzError (4xx / 5xx with the problem's code, or no answer)."""
        response = self._send(method, path, json=json, params=params, token=token, timeout=timeout)
        self.observe(_int_or_none(response.headers.get(REVISION_HEADER)))
        if response.status_code >= 400:
            raise _problem_error(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise AuthzError("the service answered something that is not JSON") from exc

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: Mapping[str, Any] | None,
        token: str | None,
        timeout: float | None,
    ) -> httpx.Response:
        bearer = token or self._api_key
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = timeout
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method, path, json=json, params=params, headers=headers, **extra
                )
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise AuthzError(
                        f"no answer from the service ({exc.__class__.__name__})"
                    ) from exc
                retry_after = None
            else:
                if response.status_code not in RETRIED_STATUSES or attempt >= self.retries:
                    return response
                retry_after = _int_or_none(response.headers.get("Retry-After"))
            time.sleep(self._delay(attempt, retry_after))
            attempt += 1

    def _delay(self, attempt: int, retry_after: int | None) -> float:
        """Exponential back-off with full jitter, capped; Retry-After if sooner."""
        # Jitter spreads the retries of many clients; nothing secret is drawn.
        delay = random.uniform(0, min(self.backoff_max, self.backoff * 2**attempt))  # noqa: S311
        if retry_after is not None:
            delay = min(float(retry_after), self.backoff_max)
        return delay

    def _decide(self, call: Any) -> Any:
        """Run a decision call; fail closed (or raise) on any error."""
        try:
            return call()
        except AuthzError as exc:
            if self.raise_on_error:
                raise
            return exc
        except Exception as exc:  # anything unexpected still denies
            if self.raise_on_error:
                raise AuthzError(f"unexpected error: {exc!r}") from exc
            return AuthzError(f"unexpected error: {exc.__class__.__name__}")

    # --- native decisions ----------------------------------------------------------

    def check(
        self,
        user_id: int,
        structure_id: int,
        space: str | None,
        action: str,
        *,
        service: str | None = None,
        at_least_revision: int | None = None,
        explain: bool = False,
    ) -> Decision:
        """May this user do this? (POST /v1/checks). Denied on any error."""
        question = Question(user_id, structure_id, space, action, service)
        return self.check_many([question], at_least_revision=at_least_revision, explain=explain)[0]

    def check_many(
        self,
        questions: Sequence[Question],
        *,
        at_least_revision: int | None = None,
        explain: bool = False,
    ) -> list[Decision]:
        """Several decisions in one call (POST /v1/checks/batch), in the asked
        order, all at the same revision. Every one denied on any error."""
        at_least = self._at_least(at_least_revision)
        answers: dict[int, Decision] = {}
        if self.cache is not None and not explain:
            for i, q in enumerate(questions):
                hit = self.cache.get(q, at_least)
                if hit is not None:
                    answers[i] = hit
        asked = [(i, q) for i, q in enumerate(questions) if i not in answers]
        if asked:
            result = self._decide(
                lambda: self.request(
                    "POST",
                    "/v1/checks/batch",
                    json={
                        "checks": [q.as_json() for _, q in asked],
                        "explain": explain,
                        **({"at_least_revision": at_least} if at_least is not None else {}),
                    },
                )
            )
            if isinstance(result, AuthzError):
                failed = Decision.failed(str(result))
                return [answers.get(i, failed) for i in range(len(questions))]
            for (i, q), raw in zip(asked, _decisions_of(result, len(asked)), strict=True):
                decision = _decision(raw)
                answers[i] = decision
                if self.cache is not None and decision.error is None and not explain:
                    self.cache.put(q, decision)
            self.observe(result.get("revision") if isinstance(result, dict) else None)
        return [answers[i] for i in range(len(questions))]

    def permissions(
        self,
        user_id: int,
        *,
        at_least_revision: int | None = None,
        page: int = 1,
        page_size: int | None = None,
    ) -> dict[str, Any]:
        """What may this user do, structure by structure (GET
        /v1/users/{id}/permissions, one page). Raises AuthzError."""
        params: dict[str, Any] = {"page": page}
        if page_size:
            params["page_size"] = page_size
        if (at_least := self._at_least(at_least_revision)) is not None:
            params["at_least_revision"] = at_least
        answer = _object(
            self.request("GET", f"/v1/users/{int(user_id)}/permissions", params=params)
        )
        self.observe(answer.get("revision"))
        return answer

    # --- AuthZEN -------------------------------------------------------------------

    def evaluate(
        self,
        subject: Mapping[str, Any],
        action: Mapping[str, Any],
        resource: Mapping[str, Any],
        *,
        context: Mapping[str, Any] | None = None,
    ) -> Decision:
        """An AuthZEN evaluation (POST /access/v1/evaluation). Denied on any error."""
        body = {
            "subject": dict(subject),
            "action": dict(action),
            "resource": dict(resource),
            "context": self._authzen_context(context),
        }
        result = self._decide(lambda: self.request("POST", "/access/v1/evaluation", json=body))
        if isinstance(result, AuthzError):
            return Decision.failed(str(result))
        return self._authzen_decision(result)

    def evaluate_many(
        self,
        evaluations: Iterable[Mapping[str, Any]],
        *,
        subject: Mapping[str, Any] | None = None,
        action: Mapping[str, Any] | None = None,
        resource: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[Decision]:
        """AuthZEN evaluations (POST /access/v1/evaluations): each item may omit
        what the defaults give. Every one denied on any error."""
        items = [dict(e) for e in evaluations]
        body: dict[str, Any] = {"evaluations": items, "context": self._authzen_context(context)}
        for name, value in (("subject", subject), ("action", action), ("resource", resource)):
            if value is not None:
                body[name] = dict(value)
        result = self._decide(lambda: self.request("POST", "/access/v1/evaluations", json=body))
        if isinstance(result, AuthzError):
            return [Decision.failed(str(result)) for _ in items]
        answers = result.get("evaluations") if isinstance(result, dict) else None
        if not isinstance(answers, list) or len(answers) != len(items):
            error = "the service answered an unexpected number of evaluations"
            if self.raise_on_error:
                raise AuthzError(error)
            return [Decision.failed(error) for _ in items]
        return [self._authzen_decision(a) for a in answers]

    def search_subjects(
        self,
        resource: Mapping[str, Any],
        action: Mapping[str, Any],
        *,
        subject_type: str = "user",
        page: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Who may do `action` on `resource`? (POST /access/v1/search/subject):
        `results` and `page.next_token`. Raises AuthzError.

        Searches send `context` as given, never the remembered revision: a page
        token is bound to its request, context included, so every page of one
        search must send the same (e.g. {"at_least_revision": authz.revision})."""
        return self._search(
            "/access/v1/search/subject",
            {"subject": {"type": subject_type}, "action": dict(action), "resource": dict(resource)},
            page,
            context,
        )

    def search_resources(
        self,
        subject: Mapping[str, Any],
        action: Mapping[str, Any],
        *,
        resource_type: str = "space",
        page: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """On what may `subject` do `action`? (POST /access/v1/search/resource)."""
        return self._search(
            "/access/v1/search/resource",
            {"subject": dict(subject), "action": dict(action), "resource": {"type": resource_type}},
            page,
            context,
        )

    def search_actions(
        self,
        subject: Mapping[str, Any],
        resource: Mapping[str, Any],
        *,
        page: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What may `subject` do on `resource`? (POST /access/v1/search/action)."""
        return self._search(
            "/access/v1/search/action",
            {"subject": dict(subject), "resource": dict(resource)},
            page,
            context,
        )

    def _search(
        self,
        path: str,
        body: dict[str, Any],
        page: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        if context is not None:
            body["context"] = dict(context)
        if page is not None:
            body["page"] = dict(page)
        return _object(self.request("POST", path, json=body))

    def _authzen_context(self, context: Mapping[str, Any] | None) -> dict[str, Any]:
        merged = dict(context or {})
        at_least = self._at_least(merged.get("at_least_revision"))
        if at_least is not None:
            merged["at_least_revision"] = at_least
        return merged

    def _authzen_decision(self, raw: Any) -> Decision:
        if not isinstance(raw, dict) or not isinstance(raw.get("decision"), bool):
            error = "the service answered something that is not a decision"
            if self.raise_on_error:
                raise AuthzError(error)
            return Decision.failed(error)
        context = raw.get("context") or {}
        revision = _int_or_none(context.get("revision"))
        self.observe(revision)
        return Decision(
            raw["decision"] is True,
            revision=revision,
            reason=context.get("reason"),
            rule=context.get("rule"),
            raw=raw,
        )

    # --- the change feed --------------------------------------------------------------

    def changes(
        self, after_revision: int | None = None, *, limit: int = 100, wait: float = 0.0
    ) -> dict[str, Any]:
        """One page of the change feed (GET /v1/changes), waiting up to `wait`
        seconds for a change. Raises ChangesGone (410: resynchronise), AuthzError."""
        params: dict[str, Any] = {"limit": limit, "wait": wait}
        if after_revision is not None:
            params["after_revision"] = after_revision
        try:
            page = _object(self.request("GET", "/v1/changes", params=params, timeout=wait + 5.0))
        except AuthzError as exc:
            if exc.status == 410:
                raise ChangesGone(str(exc), status=410, code=exc.code) from exc
            raise
        return page


def _decision(raw: Any) -> Decision:
    if not isinstance(raw, dict) or not isinstance(raw.get("allowed"), bool):
        return Decision.failed("the service answered something that is not a decision")
    return Decision(
        raw["allowed"] is True,
        revision=_int_or_none(raw.get("revision")),
        rule=raw.get("rule"),
        reason=raw.get("reason"),
        policy_version=_int_or_none(raw.get("policy_version")),
        raw=raw,
    )


def _decisions_of(result: Any, count: int) -> list[Any]:
    decisions = result.get("decisions") if isinstance(result, dict) else None
    if not isinstance(decisions, list) or len(decisions) != count:
        return [None] * count  # each becomes a failed (denied) decision
    revision = result.get("revision")
    return [{**d, "revision": revision} if isinstance(d, dict) else d for d in decisions]


def _object(answer: Any) -> dict[str, Any]:
    """A JSON object answer, or AuthzError."""
    if not isinstance(answer, dict):
        raise AuthzError("the service answered something that is not a JSON object")
    return answer


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _problem_error(response: httpx.Response) -> AuthzError:
    code = detail = None
    try:
        body = response.json()
        if isinstance(body, dict):
            code, detail = body.get("code"), body.get("detail")
    except ValueError:
        pass
    message = f"{response.status_code} {code or 'error'}" + (f": {detail}" if detail else "")
    return AuthzError(message, status=response.status_code, code=code)
