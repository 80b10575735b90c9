"""An organization admin creates an API key in the browser, calls the API with it, then revokes it."""

import re

import requests

from tests.e2e.conftest import login, screenshot
from tests.factories import MembershipFactory

KEY = re.compile(r"cnv_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


def test_an_admin_creates_uses_and_revokes_a_key(live_app, page):
    admin = MembershipFactory(role="admin", organization__name="Acme Dental")
    login(page, live_app, admin.user.username)

    page.click("text=API keys")
    page.fill("#id_name", "ERP sync")
    page.click("text=Create a key")
    shown = page.locator("[data-testid=new-key] code.secret").inner_text()
    assert KEY.fullmatch(shown)
    screenshot(page, "api-key-created")
    headers = {"Authorization": f"Bearer {shown}"}
    answer = requests.get(f"{live_app.url}/api/v1/numbers/", headers=headers, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["X-RateLimit-Limit"] == str(admin.organization.plan.api_requests_per_minute)

    page.goto(f"{live_app.url}/api-keys/")
    assert shown not in page.content()  # shown once only
    page.click("text=Revoke")
    page.wait_for_load_state("networkidle")
    assert "revoked" in page.content()
    assert requests.get(f"{live_app.url}/api/v1/numbers/", headers=headers, timeout=10).status_code == 401
