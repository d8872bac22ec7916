"""One live `authz serve` and one headless Chromium for the browser journeys
of a module: the server runs on a migrated, empty database of its own, which
the module's app (in this process) fills with the people and structures a
journey starts from, and whose outbox it reads the mailed links from."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api import create_app
from authz.runtime import close_runtime
from tests.support.api import Api
from tests.support.backend import app_settings, fresh_database
from tests.support.browser import Page, chromium
from tests.support.live import serve_env, serving


@pytest.fixture(scope="module")
def driver():
    browser = chromium()
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def live(migrated_template, tmp_path_factory) -> Iterator[dict]:
    var = tmp_path_factory.mktemp("browser")
    url = fresh_database(migrated_template, var)
    env = serve_env(url, var / "serve")
    with serving(env, var / "serve.log", workers=1) as server:
        app = create_app(app_settings(url, var))
        app.config["TESTING"] = True
        rt = app.extensions["authz"]
        try:
            yield {
                "base": f"http://127.0.0.1:{server.port}",
                "api": Api(app.test_client(), rt),
                "rt": rt,
            }
        finally:
            close_runtime(rt)


@pytest.fixture
def at(driver, live) -> Page:
    driver.delete_all_cookies()
    return Page(driver, live["base"])
