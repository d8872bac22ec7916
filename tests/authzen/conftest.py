"""The world every AuthZEN test asks about (tests/support/authzen.py)."""

from __future__ import annotations

import pytest

from tests.support.authzen import World, make_world


@pytest.fixture
def world(api, rt, structure_of) -> World:
    return make_world(api, rt, structure_of)
