"""Driving the manager console (/console/) through the Flask test client: a
browser-like client that keeps its cookies, reads the CSRF token of the page
it last loaded and sends it with its forms."""

from __future__ import annotations

import re
from typing import Any

from .api import PASSWORD

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


class Console:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.csrf: str | None = None
        self.last: Any = None

    def get(self, path: str, **kw: Any) -> Any:
        self.last = self.client.get(path, **kw)
        found = CSRF.search(self.last.get_data(as_text=True))
        if found:
            self.csrf = found.group(1)
        return self.last

    def text(self, path: str, **kw: Any) -> str:
        page = self.get(path, **kw)
        assert page.status_code == 200, (path, page.status_code, page.get_data(as_text=True))
        return page.get_data(as_text=True)

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True, **kw: Any) -> Any:
        form = dict(data or {})
        if csrf:
            if self.csrf is None:
                self.get("/console/login")
            form.setdefault("csrf_token", self.csrf)
        self.last = self.client.post(path, data=form, **kw)
        found = CSRF.search(self.last.get_data(as_text=True))
        if found:
            self.csrf = found.group(1)
        return self.last

    def log_in(self, email: str, password: str = PASSWORD) -> Console:
        self.get("/console/login")
        answer = self.post("/console/login", {"login_email": email, "password": password})
        assert answer.status_code == 302, answer.get_data(as_text=True)
        self.get("/console/")  # the session's CSRF token
        return self


def console_for(app: Any, email: str, password: str = PASSWORD) -> Console:
    """A new browser (own cookies) logged in to the console as `email`."""
    return Console(app.test_client()).log_in(email, password)
