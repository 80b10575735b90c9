"""An admin adds a number on the fake Evolution server, scans its QR, and sees it connect live."""

import pytest
import requests

from crm.models import Membership, WhatsAppNumber
from providers.fakes.evolution import FakeEvolutionServer
from tests.e2e.conftest import login, screenshot
from tests.factories import MembershipFactory, ProviderServerFactory

EVOLUTION_KEY = "e2e-evolution-key"


@pytest.fixture
def fake_evolution():
    server = FakeEvolutionServer(api_key=EVOLUTION_KEY).start()
    yield server
    server.stop()


def _number_add(page, name: str) -> None:
    page.click("[data-testid=nav-numbers]")
    page.click("[data-testid=number-add]")
    assert page.input_value("select[name=provider]") == "evolution"  # the Pro plan's default
    assert page.is_hidden("[data-provider-group=green_api]")  # credentials only for hosted providers
    page.fill("#id_name", name)
    page.click("[data-testid=number-add-form] button[type=submit]")
    page.wait_for_selector("[data-testid=number-state]")


def test_an_admin_connects_a_number_by_qr_and_sees_it_connected_without_a_reload(live_app, page, fake_evolution):
    ProviderServerFactory(base_url=fake_evolution.url, api_key=EVOLUTION_KEY)
    admin = MembershipFactory(role=Membership.Role.ADMIN, organization__name="Acme Dental")
    login(page, live_app, admin.user.username)

    _number_add(page, "Reception")
    number = WhatsAppNumber.objects.get(organization=admin.organization)
    assert page.text_content("[data-testid=number-state]") == "Not connected yet"
    page.evaluate("window.notReloaded = true")

    page.click("[data-testid=number-connect]")
    qr = page.wait_for_selector("[data-testid=number-qr]:not([hidden])")
    assert qr.get_attribute("src").startswith("data:image/png;base64,")
    assert page.get_attribute("[data-testid=number-state]", "data-state") == "waiting_for_qr_scan"
    screenshot(page, "number-qr")

    # A new QR from the provider (its qrcode.updated webhook) replaces the one shown, without a reload.
    first = qr.get_attribute("src")
    refresh = requests.post(f"{fake_evolution.url}/_fake/qr_refresh/{number.instance_name}", timeout=10)
    refresh.raise_for_status()
    page.wait_for_function(
        "first => document.querySelector('[data-testid=number-qr]').getAttribute('src') !== first", arg=first
    )

    scan = requests.post(
        f"{fake_evolution.url}/_fake/scan/{number.instance_name}", json={"phone": "5511987654321"}, timeout=10
    )
    scan.raise_for_status()
    page.wait_for_selector("[data-testid=number-state][data-state=connected]")

    assert page.evaluate("window.notReloaded") is True
    assert page.text_content("[data-testid=number-state]") == "Connected"
    assert page.text_content("[data-testid=number-phone]") == "+5511987654321"
    assert page.is_hidden("[data-testid=qr-panel]")
    assert page.is_hidden("[data-testid=number-connect]")
    assert page.text_content("[data-testid=number-last-seen]") == "just now"
    assert page.is_visible("[data-testid=number-logout]")
    assert screenshot(page, "number-connected").stat().st_size > 0
    number.refresh_from_db()
    assert (number.state, number.phone) == ("connected", "+5511987654321")

    page.click("a[href='/numbers/']")
    row = page.text_content("[data-testid=number-row]")
    assert "Reception" in row
    assert "Connected" in row

    page.click("text=Reception")
    page.click("[data-testid=number-logout]")
    page.wait_for_selector("[data-testid=number-state][data-state=logged_out]")
    assert fake_evolution.instances[number.instance_name].state == "close"


def test_a_failed_connect_shows_its_reason_on_the_page(live_app, page):
    # No Evolution server at all: the worker cannot place the number and says so to the page.
    admin = MembershipFactory(role=Membership.Role.ADMIN)
    login(page, live_app, admin.user.username)
    _number_add(page, "Sales")

    page.click("[data-testid=number-connect]")
    reason = page.wait_for_selector("[data-testid=number-reason]:not([hidden])")
    assert "No Evolution API v2 server has room" in reason.text_content()
    assert page.get_attribute("[data-testid=number-state]", "data-state") == "not_provisioned"
