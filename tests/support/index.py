"""The decision index's facts, compared: the compact index (a snapshot and its
overlay) against the dict index loaded from the same tables."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from authz.engine.index import Index, Membership


def dict_index(engine: Engine) -> Index:
    """The dict index of what the database holds now."""
    index = Index()
    with Session(engine) as session:
        index.load_all(session)
    return index


def _membership(m: Membership) -> tuple[Any, ...]:
    return (sorted(m.attachments, key=lambda a: a.id), m.subscriptions)


def assert_same_facts(index: Any, reference: Index) -> None:
    """Every fact `index` gives is the reference's: users, structures,
    memberships, both enumerations, and the sizes the metrics report."""
    assert dict(index.users.items()) == reference.users
    assert index.structures == reference.structures
    keys = sorted(index.memberships)
    assert keys == sorted(reference.memberships)
    for key in keys:
        assert _membership(index.memberships[key]) == _membership(reference.memberships[key]), key
    for sid in reference.structures:
        assert index.members(sid) == reference.members(sid), sid
    for uid in reference.users:
        assert index.structures_for(uid) == reference.structures_for(uid), uid
    assert index.users_with_memberships() == reference.users_with_memberships()
    assert index.sizes() == reference.sizes()
    # What a question reads of a membership (read in place from the arrays by
    # the compact index), on every membership, scope, space and nearby day.
    today = dt.datetime.now(dt.UTC).date()
    days = [today + dt.timedelta(days=n) for n in (-400, -1, 0, 1, 400)]
    spaces = {code for m in reference.memberships.values() for code, _ in m.subscriptions}
    spaces |= {"issued_invoices", "no_such_space"}
    for uid, sid in [*keys, (0, 0), (max(reference.users, default=0) + 1, 1)]:
        structure = reference.structures.get(sid)
        scopes = [None, *(structure.codes if structure else ()), 10**6]
        for service_id in scopes:
            for space in sorted(spaces):
                for day in days:
                    assert index.facts(uid, sid, service_id, space, day) == reference.facts(
                        uid, sid, service_id, space, day
                    ), (uid, sid, service_id, space, day)
