"""Domain errors. Each has a stable machine-readable `code`; api/errors.py maps
the classes to HTTP statuses in one place."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"
    title = "Error"

    def __init__(
        self, detail: str, *, code: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.extra = extra or {}


class Invalid(DomainError):
    """The request is well-formed but its content breaks a rule (field errors)."""

    code = "invalid"
    title = "Invalid request"

    def __init__(
        self, detail: str, *, errors: dict[str, Any] | None = None, code: str | None = None
    ) -> None:
        super().__init__(detail, code=code, extra={"errors": errors} if errors else None)


class Unauthenticated(DomainError):
    code = "unauthenticated"
    title = "Authentication required"


class Forbidden(DomainError):
    code = "forbidden"
    title = "Forbidden"


class NotFound(DomainError):
    """Unknown, or invisible to the caller: the two are indistinguishable on purpose."""

    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    title = "Conflict"


class Gone(DomainError):
    """What was asked for existed once and is no longer kept (the change feed
    before the oldest revision its log still holds)."""

    code = "gone"
    title = "Gone"


class TooManyAttempts(DomainError):
    code = "too_many_attempts"
    title = "Too many attempts"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Unavailable(DomainError):
    code = "unavailable"
    title = "Service unavailable"
