"""The admin monitoring dashboard in a real browser: its chart moves as messages flow."""

from django.utils import timezone

from crm.models import HealthCheck, WhatsAppNumber
from messaging.services.statistics import hourly_statistics_refresh
from providers.registry import ProviderName
from tests.e2e.conftest import login, screenshot
from tests.factories import ChatFactory, MessageFactory, OrganizationFactory, UserFactory, WhatsAppNumberFactory


def _chart_total(page) -> int:
    return int(page.get_attribute("#throughput-chart", "data-total") or 0)


def test_the_dashboard_chart_moves_as_messages_flow(live_app, page):
    admin = UserFactory(username="platform-admin", is_staff=True, is_superuser=True)
    organization = OrganizationFactory(name="Acme Dental")
    number = WhatsAppNumberFactory(
        organization=organization, provider=ProviderName.FAKE, state=WhatsAppNumber.State.CONNECTED
    )
    chat = ChatFactory(organization=organization, number=number)
    HealthCheck.objects.create(
        provider=ProviderName.FAKE,
        number=number,
        organization=organization,
        is_healthy=True,
        latency_ms=42,
        checked_at=number.created_at,
    )
    MessageFactory(chat=chat)
    silent = WhatsAppNumberFactory(
        organization=organization,
        name="Front desk",
        provider=ProviderName.EVOLUTION,
        state=WhatsAppNumber.State.CONNECTED,
        silence_restarted_at=timezone.now(),
        silent_since=timezone.now(),
    )
    HealthCheck.objects.create(
        provider=ProviderName.EVOLUTION,
        number=silent,
        organization=organization,
        is_healthy=False,
        latency_ms=480,
        error="GET /instance/connectionState timed out",
        checked_at=timezone.now(),
    )
    hourly_statistics_refresh()

    login(page, live_app, admin.username)
    page.goto(f"{live_app.url}/admin/monitoring/")
    page.wait_for_selector("#throughput-chart rect", state="attached")
    assert _chart_total(page) == 1
    assert page.text_content("#throughput-total") == "1"
    assert "fake" in page.text_content("#active-numbers")
    assert "Front desk" in page.text_content("#silent-numbers")
    assert "timed out" in page.text_content("#unhealthy")
    assert "Acme Dental" in page.text_content("#top-organizations")

    for _ in range(4):
        MessageFactory(chat=chat)
    for _ in range(3):
        MessageFactory(chat=chat, direction="out", status="delivered")

    # The page polls every few seconds: the chart redraws with the new messages, no reload.
    page.wait_for_function("document.getElementById('throughput-chart').getAttribute('data-total') === '8'")
    assert page.text_content("#throughput-total") == "8"
    bars = page.eval_on_selector_all(
        "#throughput-chart rect[data-in], #throughput-chart rect[data-out]",
        "rects => rects.map(rect => Number(rect.getAttribute('height')))",
    )
    assert max(bars) > 0
    assert screenshot(page, "monitoring-dashboard").stat().st_size > 0
