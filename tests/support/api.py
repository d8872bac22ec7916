"""Talking to the app under test: a JSON client that remembers a bearer token,
people who sign up and log in, structures, and the mail they are sent."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from authz.workflows import operators
from models import OutboxMail

from .consent import attach

PASSWORD = "correct horse battery staple"

# Valid SIRETs (Luhn) for the structures of a test, in the order it makes them.
VALID_SIRETS = [
    "73282932000074",
    "35600000000048",
    "55208131766522",
    "44306184100047",
    "38012986643097",
]


def outbox(rt, to: str | None = None) -> list[OutboxMail]:
    """The mails queued so far (to one address if given), oldest first."""
    with rt.sessions() as s:
        stmt = select(OutboxMail).order_by(OutboxMail.id)
        if to:
            stmt = stmt.where(OutboxMail.to_address == to)
        return list(s.scalars(stmt))


def activation_token(rt, email: str) -> str:
    """The token of the last activation link mailed to `email`."""
    mails = [m for m in outbox(rt, email.lower()) if m.kind == "activation"]
    assert mails, f"no activation mail for {email}"
    match = re.search(r"token=([A-Za-z0-9_\-]+)", mails[-1].body)
    assert match
    return match.group(1)


class Api:
    """A test client that speaks JSON and remembers a bearer token."""

    def __init__(self, client, rt, token: str | None = None, user: dict | None = None):
        self.client, self.rt, self.token = client, rt, token
        # The logged-in account as the API showed it; {} while nobody is logged in.
        self.user: dict[str, Any] = user or {}

    def _headers(self, headers):
        h = dict(headers or {})
        if self.token:
            h.setdefault("Authorization", f"Bearer {self.token}")
        return h

    def __getattr__(self, method):
        if method not in ("get", "post", "put", "patch", "delete"):
            raise AttributeError(method)

        def call(path, json=None, headers=None, **kw):
            return getattr(self.client, method)(
                path, json=json, headers=self._headers(headers), **kw
            )

        return call

    def signup(self, email: str, first="Ada", last="Lovelace", **extra):
        return self.client.post(
            "/v1/accounts",
            json={"login_email": email, "first_name": first, "last_name": last, **extra},
        )

    def person(self, email: str, first="Ada", last="Lovelace", **extra) -> Api:
        """Sign up (with `extra` fields, e.g. a contact_email), activate through
        the mailed link, log in: a logged-in client."""
        created = self.signup(email, first, last, **extra)
        assert created.status_code == 201, created.json
        token = activation_token(self.rt, email)
        activated = self.client.post(
            "/v1/accounts/activation", json={"token": token, "password": PASSWORD}
        )
        assert activated.status_code == 200, activated.json
        login = self.client.post(
            "/v1/auth/token", json={"login_email": email, "password": PASSWORD}
        )
        assert login.status_code == 200, login.json
        return Api(self.client, self.rt, login.json["access_token"], created.json)


def create_structure(
    owner: Api,
    identifier_value: str,
    designation: str = "ACME SARL",
    *,
    identifier_type: str = "SIRET",
    **extra,
) -> dict:
    """`owner` creates a private structure and becomes its principal; its JSON."""
    r = owner.post(
        "/v1/structures",
        json={
            "identifier_type": identifier_type,
            "identifier_value": identifier_value,
            "designation": designation,
            **extra,
        },
    )
    assert r.status_code == 201, r.json
    return r.json


def attach_directly(
    manager: Api,
    structure_id: int,
    who: str | int,
    *,
    role: str = "simple",
    service_ids: list[int] | None = None,
    **extra,
) -> list[dict]:
    """`manager` attaches a user directly (POST …/attachments): `who` is their
    login email (a str) or their id (an int); the whole structure unless
    `service_ids` are given. An account the structure may not attach at once
    is invited, and the invitation accepted in the person's name
    (tests/support/consent.py). The attachments made."""
    return attach(
        manager,
        structure_id,
        {
            "login_email" if isinstance(who, str) else "user_id": who,
            "role": role,
            "whole_structure": not service_ids,
            "service_ids": service_ids or [],
            **extra,
        },
    )


def make_reviewer(api: Api, rt) -> Api:
    """A logged-in security reviewer (rita@example.org)."""
    reviewer = api.person("rita@example.org", "Rita", "Reviewer")
    with rt.sessions() as s:
        operators.create_operator(s, rt, "rita@example.org", role=operators.REVIEWER)
    return reviewer
