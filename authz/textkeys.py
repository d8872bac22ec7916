"""Accent- and case-insensitive search keys, the same on every backend.

SQLite has no accent folding and PostgreSQL's needs an extension, so the text
people search by is stored a second time, folded, in a `*_key` column:
users.last_name_key / first_name_key, structures.designation_key,
services.code_key / label_key. The mapper listeners below recompute the keys
whenever the ORM inserts or updates one of these rows, so every workflow keeps
them right without thinking about it. A search folds its term the same way and
compares keys with LIKE.

Bulk Core writes (`insert(User.__table__)`, `update(User)…values(...)`) bypass
the ORM: they must fill the keys themselves with `fold`, or the rows they write
are not found by these searches.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy import event

from models import Service, Structure, User

# Searchable column → its key column, per model.
KEYS: dict[type, dict[str, str]] = {
    User: {"last_name": "last_name_key", "first_name": "first_name_key"},
    Structure: {"designation": "designation_key"},
    Service: {"code": "code_key", "label": "label_key"},
}


def fold(text: str | None) -> str:
    """`text` compatibility-decomposed (NFKD), case-folded, with its combining
    marks dropped and its whitespace collapsed: "  Hélène  ÉTIENNE" → "helene etienne",
    "ﬁnance" → "finance", "Straße" → "strasse". None gives ""."""
    folded = unicodedata.normalize("NFKD", text or "").casefold()
    decomposed = unicodedata.normalize("NFKD", folded)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.split())


def _fill_keys(_mapper: Any, _connection: Any, target: Any) -> None:
    for source, key in KEYS[type(target)].items():
        setattr(target, key, fold(getattr(target, source)))


for _model in KEYS:
    event.listen(_model, "before_insert", _fill_keys)
    event.listen(_model, "before_update", _fill_keys)
