"""Writes that change rights answer with the policy revision they committed.

A caller that just validated a request, attached a user or applied anything
else that changes rights passes that revision as `at_least_revision` to a
check (or AuthZEN evaluation): the answer is then sure to see its write, on
any worker of any instance (docs/clients.md, "Reading your own writes").

- `@revisioned` marks such a view: its JSON answer gets a `revision` field and
  every answer the `Authz-Revision` header. The revision is the one the
  request's transactions committed (authz/workflows/records.py records it on
  the session); a write that happened to change nothing answers with the
  latest revision, which is just as safe to wait for.
- `register` installs the header and, when the app is TESTING, the guard: a
  successful request that committed a revision from a view not marked
  `@revisioned` is an error, so a new route cannot forget it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g

from authz.workflows.records import committed_revision, current_revision

from .identity import runtime

HEADER = "Authz-Revision"

View = Callable[..., Any]


class Written:
    """A workflow's result with the revision it committed: what a response
    schema with a `revision` field dumps (every other attribute is the result's)."""

    def __init__(self, value: Any, revision: int) -> None:
        self._value = value
        self.revision = revision

    def __getattr__(self, name: str) -> Any:
        return getattr(self._value, name)


def written_revision() -> int:
    """The revision this request's write committed, else the latest one."""
    session = g.get("db_session")
    revision = committed_revision(session) if session is not None else None
    if revision is None:
        with runtime().read_sessions() as reading:
            revision = current_revision(reading)
    return revision


def revisioned(view: View) -> View:
    """Answer the view's write with its revision (field and header). A view that
    answered nothing answers `{"revision": n}`; a dict gets the field; a ready
    Response only the header; any other result is wrapped in `Written`."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = view(*args, **kwargs)
        g.authz_revision = revision = written_revision()
        if result is None:
            return {"revision": revision}
        if isinstance(result, Response):
            return result
        if isinstance(result, tuple):  # (result, status) or (result, status, headers)
            return (answer(result[0], revision), *result[1:])
        return answer(result, revision)

    return wrapper


def answer(result: Any, revision: int) -> Any:
    """`result` with `revision`, for the response schema to dump."""
    if isinstance(result, dict):
        return {**result, "revision": revision}
    return Written(result, revision)


def _answer_with_revision(response: Response) -> Response:
    revision = g.get("authz_revision")
    if revision is not None:
        response.headers[HEADER] = str(revision)
        return response
    session = g.get("db_session")
    if (
        current_app.testing
        and response.status_code < 400
        and session is not None
        and committed_revision(session) is not None
    ):
        raise RuntimeError(
            "this view committed a change of rights but does not answer with its "
            "revision: mark it @revisioned (api/revisions.py)"
        )
    return response


def register(app: Flask) -> None:
    app.after_request(_answer_with_revision)
