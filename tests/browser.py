"""Real Chromium for the console's page tests: Debian's /usr/bin/chromium driven by Playwright, a
small (phone) and a large (desktop) screen, and a screenshot of each page a test shows, saved under
var/screenshots/ (docs/screenshots/ keeps the ones the README shows)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from harness import REPO

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = REPO / "var" / "screenshots"
SCREENS = {"small": {"width": 390, "height": 844}, "large": {"width": 1440, "height": 900}}


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("the console's page tests need Debian's chromium: `make test` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture(params=list(SCREENS))
def screen(request):
    """Each test that takes it runs on a small and a large screen."""
    return request.param


@pytest.fixture
def page(browser, screen):
    context = browser.new_context(viewport=SCREENS[screen], accept_downloads=True, locale="en-US",
                                  timezone_id="UTC")
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


def screenshot(page, name: str, screen: str) -> Path:
    """The whole page as var/screenshots/<name>-<screen>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{screen}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
