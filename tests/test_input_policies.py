"""Search terms are literal, passwords have a minimum strength, login emails are
normalised and look-alikes refused (issue 10, point 3; docs/decisions.md)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from authz import logins, passwords
from models import User
from tests.support.api import PASSWORD, activation_token

# --- LIKE wildcards ---------------------------------------------------------------


@pytest.mark.parametrize("term", ["%", "_", "/", "%%", "a_c", "1%"])
def test_structure_search_terms_are_substrings_not_patterns(api, structure_of, term):
    ada = api.person("ada@example.org")
    structure_of(ada, "ABC Boulangerie")
    structure_of(ada, "A%C 1/2")
    found = ada.get("/v1/structures", query_string={"q": term}).json["items"]
    expected = [s for s in ("ABC Boulangerie", "A%C 1/2") if term.lower() in s.lower()]
    assert sorted(s["designation"] for s in found) == sorted(expected)


def test_a_wildcard_matches_only_itself(api, structure_of):
    ada = api.person("ada@example.org")
    structure_of(ada, "ABC")
    structure_of(ada, "A%C")
    assert [s["designation"] for s in ada.get("/v1/structures?q=%25").json["items"]] == ["A%C"]
    assert ada.get("/v1/structures?q=A_C").json["total"] == 0


# --- the password policy ------------------------------------------------------------


@pytest.mark.parametrize(
    "password, reason",
    [
        ("short", "Length"),
        ("x" * 257, "Length"),
        (" " * 12, "white space"),
        ("\t \n" * 5, "white space"),
        ("aaaaaaaaaaaa", "repeated"),
        ("abcabcabcabc", "repeated"),
        ("12121212121212", "repeated"),
        ("password1234", "common"),
        ("Password1234!", "common"),
        ("!!Qwerty2024", "common"),
        ("iloveyou2024", "common"),
        ("123456789012", "digits"),
        ("2024-01-01 12:00", "digits"),
        ("claire.martin.1984", "login email"),
        ("my claire.martin@example.org!", "login email"),
    ],
)
def test_weak_passwords_are_refused(password, reason):
    found = passwords.weakness(password, login_email="claire.martin@example.org")
    assert found is not None and reason.lower() in found.lower(), found


@pytest.mark.parametrize(
    "password", [PASSWORD, "Tr0ub4dor&3 horse", "la boulangerie ouvre à 7h", "ab" * 3 + "cd" * 3]
)
def test_reasonable_passwords_pass(password):
    assert passwords.weakness(password, login_email="claire.martin@example.org") is None


def test_the_common_list_is_shipped_and_large():
    common = passwords.common_passwords()
    assert len(common) == 10_000 and "password" in common and "123456" in common


def test_activation_refuses_a_weak_password_and_keeps_the_link(api, rt):
    assert api.signup("claire.martin@example.org").status_code == 201
    token = activation_token(rt, "claire.martin@example.org")
    for weak in ("password1234", " " * 12, "claire.martin2026"):
        r = api.post("/v1/accounts/activation", json={"token": token, "password": weak})
        assert (r.status_code, r.json["code"]) == (422, "weak_password"), weak
        assert r.json["errors"]["password"]
    r = api.post("/v1/accounts/activation", json={"token": token, "password": PASSWORD})
    assert r.status_code == 200 and r.json["status"] == "active"


# --- login emails ---------------------------------------------------------------------


def test_login_emails_are_stored_in_nfkc(api, rt):
    r = api.signup("\uff43laire.martin@Example.org")  # fullwidth c
    assert r.status_code == 201 and r.json["login_email"] == "claire.martin@example.org"


def test_a_fullwidth_variant_is_the_same_login(api):
    api.person("claire.martin@example.org")
    r = api.signup("\uff43laire.martin@example.org")
    assert (r.status_code, r.json["code"]) == (409, "login_email_taken")
    # And logs in to the same account.
    login = api.post(
        "/v1/auth/token",
        json={"login_email": "\uff43laire.martin@example.org", "password": PASSWORD},
    )
    assert login.status_code == 200


@pytest.mark.parametrize(
    "lookalike",
    [
        "\u0441laire.martin@example.org",  # Cyrillic small es
        "cl\u0430ire.martin@example.org",  # Cyrillic small a
        "claire.mart\u0456n@example.org",  # Cyrillic small byelorussian-ukrainian i
        "claire.martin@ex\u0430mple.org",  # in the domain
    ],
)
def test_a_confusable_login_is_refused_at_sign_up_and_by_a_manager(
    api, rt, structure_of, lookalike
):
    claire = api.person("claire.martin@example.org")
    r = api.signup(lookalike)
    assert (r.status_code, r.json["code"]) == (409, "login_confusable"), r.json
    sid = structure_of(claire)["id"]
    r = claire.post(
        "/v1/accounts",
        json={"structure_id": sid, "login_email": lookalike, "first_name": "X", "last_name": "Y"},
    )
    assert (r.status_code, r.json["code"]) == (409, "login_confusable")
    with rt.sessions() as s:
        assert s.scalar(select(User.id).where(User.login_email == lookalike)) is None


def test_skeletons_keep_different_ascii_addresses_apart():
    assert logins.skeleton("claire@example.org") != logins.skeleton("c1aire@example.org")
    assert logins.skeleton("rn@example.org") != logins.skeleton("m@example.org")
    assert logins.skeleton("\u0441laire@example.org") == logins.skeleton("Claire@Example.org")


def test_every_account_written_has_its_skeleton(api, rt):
    api.signup("noe@example.org")
    with rt.sessions() as s:
        user = s.scalar(select(User).where(User.login_email == "noe@example.org"))
        assert user.login_skeleton == logins.skeleton("noe@example.org")
