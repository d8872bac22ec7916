"""Headless Chromium for the browser tests (tests/browser/): Debian's
`chromium` and `chromium-driver` driven by selenium. Without them the tests
skip, unless AUTHZ_TEST_REQUIRE_BROWSER=1 (CI sets it): then they fail."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, NoReturn

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

REQUIRED = os.environ.get("AUTHZ_TEST_REQUIRE_BROWSER") == "1"
# Where the journeys save screenshots of the main pages (docs/screenshots/ is
# refreshed with AUTHZ_TEST_SCREENSHOTS=docs/screenshots); empty: none.
SCREENSHOTS = os.environ.get("AUTHZ_TEST_SCREENSHOTS", "")
# The longest wait for an element: generous, since a loaded CI machine may take
# seconds to run Swagger UI on the whole document (a found element returns at once).
WAIT_SECONDS = 30


def _missing(reason: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(f"{reason} (AUTHZ_TEST_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def chromium() -> Any:
    """A new headless Chromium, or skip (fail when required)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        _missing("chromium or chromium-driver is not installed")
        raise AssertionError("unreachable: _missing skips or fails")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--lang=fr-FR",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    return driver


def screenshot(driver: Any, name: str) -> None:
    if SCREENSHOTS:
        folder = Path(SCREENSHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(folder / f"{name}.png"))


class Page:
    """A person at the browser: the driver, the live server's base URL, and
    short verbs for the journeys."""

    def __init__(self, driver: Any, base: str) -> None:
        self.driver, self.base = driver, base

    def open(self, path: str) -> Page:
        self.driver.get(self.base + path)
        return self

    def find(self, css: str) -> Any:
        return WebDriverWait(self.driver, WAIT_SECONDS).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, css))
        )

    def all(self, css: str) -> list[Any]:
        """The elements now on the page (no wait: find() what the page must
        show first, after a click that loads another page)."""
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def fill(self, css: str, value: str) -> Page:
        field = self.find(css)
        field.clear()
        field.send_keys(value)
        return self

    def click(self, css: str) -> Page:
        self.find(css).click()
        return self

    def text(self) -> str:
        return self.find("body").text

    def log_in(self, email: str, password: str) -> Page:
        self.driver.delete_all_cookies()
        self.open("/console/login?lang=en")
        self.fill("#login_email", email).fill("#password", password).click("#login")
        self.find("#who")
        return self

    def log_out(self) -> Page:
        self.click("#logout")
        self.find("#login-form")
        return self
