"""Browser tests: Debian's Chromium driven by Playwright, against the whole product on loopback.

`make test` installs Chromium (`apt-get install chromium`) and Playwright's Python package; the
browser Playwright would download is never used (downloads fail here): `executable_path` points at
/usr/bin/chromium. Screenshots go to tests/e2e/screenshots/ (git-ignored).
"""

from pathlib import Path

import pytest
from django.db import connections

from tests.e2e.live_app import LiveApp
from tests.factories import PASSWORD

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent / "screenshots"
# As root and on a closed network: no sandbox, and nothing Chromium would fetch in the background.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(monkeypatch):
    """Chromium for one test. Playwright's sync API keeps an event loop running in this thread, so
    Django's guard against ORM calls from async code must be off while it runs; per test (not per
    session), so that loop is gone before any other test uses the ORM."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
        # Connections opened while Playwright's loop ran belong to that loop's context: close them
        # here, or they outlive the test and block dropping the test database.
        connections.close_all()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def live_app(transactional_db):
    """The product served on a free port with a worker; rows the test commits are what it serves."""
    app = LiveApp().start()
    yield app
    app.stop()


def login(page, live_app: LiveApp, username: str, password: str = PASSWORD) -> None:
    """Log in through the real login form, as a person would."""
    page.goto(f"{live_app.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(autouse=True)
def _fast_password_hashing():
    """Keep the real password hasher: the live app (another process) must verify what tests store."""
