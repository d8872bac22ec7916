"""Page arguments from the query string, capped by the settings."""

from __future__ import annotations

from typing import Any, TypedDict

from .identity import runtime


class PageArgs(TypedDict):
    page: int
    page_size: int


def page_args(args: dict[str, Any]) -> PageArgs:
    """Pop page / page_size from parsed query args; page_size is clamped to the cap."""
    settings = runtime().settings
    size = args.pop("page_size", None) or settings.page_size
    return {"page": args.pop("page", 1), "page_size": min(size, settings.page_size_max)}
