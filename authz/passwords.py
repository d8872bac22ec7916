"""The password policy: what a new password must be (docs/decisions.md, "Passwords").

A password is refused (422 `weak_password`, the reason in `errors.password`) when:

- it has fewer than 12 or more than 256 characters;
- it is only white space, or one character repeated, or a short pattern of up to
  four characters repeated (`abcabcabcabc`);
- it is one of the 10,000 most common passwords (`data/common-passwords.txt`),
  compared without case, or becomes one once the digits, punctuation and
  spaces at its start and end are removed (`password1234`, `!!Qwerty2024`), or
  is nothing but digits, punctuation and spaces;
- it contains the login email, or its part before the @ when that has at least
  four characters.

No composition rules (NIST SP 800-63B): a long passphrase passes.
"""

from __future__ import annotations

import functools
import string
from importlib import resources

from .errors import Invalid

MIN_LENGTH = 12
MAX_LENGTH = 256
# Removed from both ends before the look-up in the common list.
_DECORATION = string.digits + string.punctuation + string.whitespace


@functools.cache
def common_passwords() -> frozenset[str]:
    text = resources.files("authz").joinpath("data", "common-passwords.txt").read_text("utf-8")
    return frozenset(
        line.casefold() for line in text.splitlines() if line and not line.startswith("#")
    )


def weakness(password: str, *, login_email: str | None = None) -> str | None:
    """Why `password` is refused, in one sentence, or None if it is acceptable."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        return f"Length must be {MIN_LENGTH} to {MAX_LENGTH}."
    if not password.strip():
        return "Only white space."
    for period in range(1, 5):
        if len(password) % period == 0 and password == password[:period] * (
            len(password) // period
        ):
            return "A short pattern repeated."
    folded = password.casefold()
    core = folded.strip(_DECORATION)
    if not core:
        return "Only digits, punctuation and spaces."
    common = common_passwords()
    if folded in common or core in common:
        return "Too common: it is among the most used passwords."
    if login_email:
        email = login_email.casefold()
        local = email.partition("@")[0]
        if email in folded or (len(local) >= 4 and local in folded):
            return "It contains your login email."
    return None


def check(password: str, *, login_email: str | None = None) -> None:
    """Raises Invalid `weak_password` if `password` breaks the policy."""
    reason = weakness(password or "", login_email=login_email)
    if reason is not None:
        raise Invalid(
            f"This password is not accepted: {reason}",
            errors={"password": [reason]},
            code="weak_password",
        )
