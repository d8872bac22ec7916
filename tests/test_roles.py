"""The role rule of authz/roles.py: validated attachments in force (dates
inclusive) give a role, the strongest counts, and the variant that ignores the
dates on purpose (what a manager keeps or must not touch)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from authz import roles
from authz.workflows import invitations
from authz.workflows.access import role_on
from authz.workflows.attachments import attach_directly, create_request, validate_request
from authz.workflows.structures import create_private, create_service
from models import ROLES, Attachment, User
from tests.support.rows import user_row

DAY = dt.date(2026, 3, 10)


@dataclass
class Row:
    role: str
    status: str = "validated"
    valid_from: dt.date = DAY
    valid_until: dt.date | None = None


def test_roles_rank_principal_secondary_simple_technical_and_no_role_below_all():
    assert sorted(ROLES, key=roles.RANK.__getitem__, reverse=True) == [
        "principal",
        "secondary",
        "simple",
        "technical",
    ]
    assert min(roles.RANK.values()) > 0  # 0 is "no role"


@pytest.mark.parametrize(
    "valid_from, valid_until, expected",
    [
        (DAY, None, True),  # starts today, open-ended
        (DAY, DAY, True),  # one day: both ends inclusive
        (DAY - dt.timedelta(days=5), DAY - dt.timedelta(days=1), False),  # ended yesterday
        (DAY + dt.timedelta(days=1), None, False),  # starts tomorrow
    ],
)
def test_an_attachment_is_in_force_between_its_dates_both_inclusive(
    valid_from, valid_until, expected
):
    assert roles.in_force(Row("simple", valid_from=valid_from, valid_until=valid_until), DAY) is (
        expected
    )


def test_the_strongest_role_in_force_counts_and_others_are_ignored():
    rows = [
        Row("simple"),
        Row("principal", status="pending"),  # not validated
        Row("secondary", valid_from=DAY + dt.timedelta(days=1)),  # not yet
        Row("technical"),
    ]
    assert roles.role_in_force(rows, DAY) == "simple"
    assert roles.role_in_force(rows, DAY + dt.timedelta(days=1)) == "secondary"
    assert roles.role_in_force([], DAY) is None
    assert roles.strongest([]) is None


def test_the_validated_role_ignores_the_dates_but_not_the_status():
    rows = [
        Row("secondary", valid_from=DAY + dt.timedelta(days=7)),  # starts next week
        Row("principal", status="deleted"),
    ]
    assert roles.role_in_force(rows, DAY) is None
    assert roles.validated_role(rows) == "secondary"
    assert roles.validated_role([Row("simple", status="pending")]) is None


def test_today_is_the_utc_date():
    late_evening_in_new_york = dt.datetime(
        2026, 3, 10, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))
    )
    assert roles.today(late_evening_in_new_york) == dt.date(2026, 3, 11)
    with time_machine.travel(dt.datetime(2026, 3, 10, 23, 59, tzinfo=dt.UTC)):
        assert roles.today() == dt.date(2026, 3, 10)


def test_today_is_the_utc_date_whatever_the_local_time_zone():
    # 23:30 in New York on 10 March: the local date is the 10th, UTC's the 11th.
    with time_machine.travel(dt.datetime(2026, 3, 10, 23, 30, tzinfo=ZoneInfo("America/New_York"))):
        assert dt.date.today() == dt.date(2026, 3, 10)  # noqa: DTZ011 - the local date, to compare
        assert roles.today() == dt.date(2026, 3, 11)


def _person(session, email: str) -> User:
    user = user_row(email, "A", email.split("@", maxsplit=1)[0])
    session.add(user)
    session.commit()
    return user


def test_the_sql_condition_and_the_python_rule_agree(rt, session):
    """in_force_condition (queries) and in_force (memory) are the same rule."""
    claire = _person(session, "claire@example.org")
    structure = create_private(
        session,
        rt,
        claire,
        identifier_type="AUTRE",
        identifier_value="R-1",
        designation="Roles",
    )
    today = roles.today()
    windows = [
        (today, None),
        (today, today),
        (today - dt.timedelta(days=3), today - dt.timedelta(days=1)),
        (today + dt.timedelta(days=1), None),
        (today - dt.timedelta(days=1), today + dt.timedelta(days=1)),
    ]
    for i, (start, end) in enumerate(windows):
        for status in ("validated", "pending"):
            user = _person(session, f"u{i}{status}@example.org")
            session.add(
                Attachment(
                    user_id=user.id,
                    structure_id=structure.id,
                    role="simple",
                    status=status,
                    valid_from=start,
                    valid_until=end,
                )
            )
    session.commit()
    rows = session.scalars(select(Attachment).where(Attachment.structure_id == structure.id)).all()
    by_sql = set(
        session.scalars(
            select(Attachment.id).where(
                Attachment.structure_id == structure.id, roles.in_force_condition(today)
            )
        )
    )
    by_python = {a.id for a in rows if a.status == "validated" and roles.in_force(a, today)}
    assert by_sql == by_python and len(by_python) == 4  # the principal and three windows


def test_a_manager_validating_a_request_keeps_a_role_that_starts_later(rt, session):
    """Paul is attached as secondary from next week; he asks for another service.
    Validated without naming a role, he stays secondary (the role written on his
    attachments), not simple: none of them is in force yet, and yet it is his."""
    claire = _person(session, "claire@example.org")
    paul = _person(session, "paul@example.org")
    structure = create_private(
        session,
        rt,
        claire,
        identifier_type="AUTRE",
        identifier_value="R-2",
        designation="Roles",
    )
    atelier = create_service(session, rt, claire, structure.id, code="ATELIER", label="Atelier")
    boutique = create_service(session, rt, claire, structure.id, code="BOUTIQUE", label="Shop")
    invitation = attach_directly(
        session,
        rt,
        claire,
        structure.id,
        user_id=paul.id,
        role="secondary",
        whole_structure=False,
        service_ids=[atelier.id],
        valid_from=roles.today() + dt.timedelta(days=7),
    )
    invitations.accept(session, rt, paul, invitation.id)  # Paul's account is active
    assert role_on(session, paul, structure.id) is None  # not in force yet
    request = create_request(
        session,
        rt,
        paul,
        structure_id=structure.id,
        whole_structure=False,
        service_ids=[boutique.id],
    )
    validate_request(session, rt, claire, request.id)
    held = session.scalars(
        select(Attachment.role).where(
            Attachment.user_id == paul.id,
            Attachment.structure_id == structure.id,
            Attachment.status == "validated",
        )
    ).all()
    assert sorted(held) == ["secondary", "secondary"]
