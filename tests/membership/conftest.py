"""One database and one app per module for the membership tests.

Creating them per test costs about a second on PostgreSQL, and these tests
make many people each; so every module shares one migrated database and one
app, and every test builds its own bakery, people with addresses of their own
(tests/support/membership.py: `addr`) and its own client keys, and compares
states before and after: tests stay independent of each other and of their
order.
"""

from __future__ import annotations

import pytest

from api import create_app
from authz.runtime import close_runtime
from tests.support.api import Api, create_structure
from tests.support.backend import POSTGRES_URL, app_settings, fresh_database
from tests.support.membership import Bakery, make_bakery, next_siret, next_test


@pytest.fixture(scope="module")
def shared_app(migrated_template, tmp_path_factory):
    """A freshly migrated, empty database (SQLite copy, or the PostgreSQL one
    emptied) and the app on it, for the whole module."""
    var = tmp_path_factory.mktemp("shared")
    url = fresh_database(migrated_template, var)
    if POSTGRES_URL:
        # Commits need not wait for the WAL to reach the disk: durability after
        # a crash of the server is not under test; visibility, locking and
        # atomicity, which are, stay the same. A third off these modules' time.
        url += ("&" if "?" in url else "?") + "options=-c%20synchronous_commit%3Doff"
    app = create_app(app_settings(url, var / "var"))
    app.config["TESTING"] = True
    yield app
    close_runtime(app.extensions["authz"])


@pytest.fixture
def app(shared_app):
    """Overrides the suite's per-test app: `rt`, `client` and `api` use this one."""
    return shared_app


@pytest.fixture(autouse=True)
def own_names():
    """Each test gets its own number, used to make its addresses unique."""
    next_test()


@pytest.fixture
def structure_of(api):
    """Overrides the suite's: a new private structure with a never-used SIRET."""

    def make(owner: Api, designation: str = "ACME SARL", **extra) -> dict:
        return create_structure(owner, next_siret(), designation, **extra)

    return make


@pytest.fixture
def bakery(api, structure_of) -> Bakery:
    return make_bakery(api, structure_of)
