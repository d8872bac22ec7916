"""The Flask application class of the service."""

from __future__ import annotations

from collections.abc import Callable
from inspect import iscoroutinefunction
from typing import Any

from flask import Flask


class App(Flask):
    """Flask, asking once per function whether it is a coroutine function.

    Flask's ensure_sync() runs inspect.iscoroutinefunction() on every hook,
    view and flask-smorest layer of every request (twenty-odd calls a
    request, about a microsecond each); none of them changes, so the answer
    is kept per function (a bound method is keyed by its function: the view
    methods are bound anew on each request). docs/performance.md, "HTTP
    checks: the plumbing"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._coroutine: dict[Any, bool] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        key = getattr(func, "__func__", func)
        coroutine = self._coroutine.get(key)
        if coroutine is None:
            coroutine = self._coroutine[key] = iscoroutinefunction(func)
        return self.async_to_sync(func) if coroutine else func
