"""The space catalogue, read from policies/spaces.yaml."""

from __future__ import annotations

from . import schemas as s
from .blueprint import Blueprint
from .identity import runtime

blp = Blueprint("spaces", __name__, url_prefix="/v1/spaces", description="Space catalogue")


@blp.route("")
@blp.operation("list_spaces")
@blp.response(200, s.SpaceSchema(many=True))
def catalogue():
    """Every space: code, label, public-only, opened by default, default grants."""
    return list(runtime().policies.spaces)
