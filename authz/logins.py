"""Login emails: their normal form, and the key that makes look-alikes equal.

- **Normal form** (`normalize`): Unicode NFKC, stripped, lower-cased. It is what
  is stored and what every log-in and look-up compares, so `claire@…`
  written with a fullwidth c (U+FF43) and `claire@…` are one login.
- **Skeleton** (`skeleton`): the normal form casefolded, with every character
  that looks like an ASCII letter or digit replaced by that letter or digit
  (`data/confusables.tsv`, from Unicode's confusables data), then NFKC again.
  `claire@…` written with a Cyrillic es (U+0441) has the skeleton of `claire@…`: the service
  refuses to create the second of two accounts with the same skeleton
  (409 `login_confusable`), so nobody can pass for someone else in a list of
  users or in a manager's search. ASCII characters are never mapped (`rn` and
  `m`, `0` and `o` stay apart): two real addresses may differ that way.

The mapper listeners at the bottom keep `users.login_skeleton` right on every
ORM insert or update (like authz/textkeys.py does for the search keys).
"""

from __future__ import annotations

import functools
import unicodedata
from importlib import resources
from typing import Any

from sqlalchemy import event

from models import User


def normalize(email: str | None) -> str:
    """The stored form of a login email: NFKC, stripped, lower-cased."""
    return unicodedata.normalize("NFKC", email or "").strip().lower()


@functools.cache
def _confusables() -> dict[int, str]:
    """Code point → the ASCII letter or digit it looks like (str.translate table)."""
    table: dict[int, str] = {}
    text = resources.files("authz").joinpath("data", "confusables.tsv").read_text("utf-8")
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        code, prototype = line.split("\t")[:2]
        table[int(code.removeprefix("U+"), 16)] = prototype
    return table


def skeleton(email: str | None) -> str:
    """The look-alike key of a login email (see the module docstring)."""
    folded = normalize(email).casefold()
    mapped = unicodedata.normalize("NFKC", folded.translate(_confusables()))
    return mapped.casefold()


def _fill_skeleton(_mapper: Any, _connection: Any, target: User) -> None:
    target.login_skeleton = skeleton(target.login_email)


event.listen(User, "before_insert", _fill_skeleton)
event.listen(User, "before_update", _fill_skeleton)
