"""The space catalogue, read from policies/spaces.yaml."""

from __future__ import annotations

from flask_smorest import Blueprint

from . import schemas as s
from .identity import runtime

blp = Blueprint("spaces", __name__, url_prefix="/v1/spaces", description="Space catalogue")


@blp.route("")
@blp.response(200, s.SpaceSchema(many=True))
def catalogue():
    """Every space: code, label, public-only, opened by default, default grants."""
    return list(runtime().policies.spaces)
