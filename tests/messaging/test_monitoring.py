"""The admin monitoring dashboard: its figures equal the data behind them, walled per organization."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from crm.models import HealthCheck, Membership, WhatsAppNumber
from messaging.models import Message
from messaging.monitoring import MonitoringScope, monitoring_figures, queue_depth
from messaging.services.statistics import hourly_statistics_refresh
from messaging.tasks.cleanup import health_checks_prune_task
from providers.registry import ProviderName
from tests.factories import (
    ChatFactory,
    MembershipFactory,
    MessageFactory,
    OrganizationFactory,
    ProviderServerFactory,
    UserFactory,
    WhatsAppNumberFactory,
)
from tests.messaging.outbound_worker import broker_queue

pytestmark = pytest.mark.django_db

PLATFORM = MonitoringScope(organization_ids=None)


def _connected(organization, provider, **fields) -> WhatsAppNumber:
    return WhatsAppNumberFactory(
        organization=organization, provider=provider, state=WhatsAppNumber.State.CONNECTED, **fields
    )


def _messages(number, *, inbound=0, outbound=0, failed=0, minutes_ago=0):
    chat = ChatFactory(organization=number.organization, number=number)
    when = timezone.now() - timedelta(minutes=minutes_ago)
    made = [MessageFactory(chat=chat) for _ in range(inbound)]
    made += [
        MessageFactory(chat=chat, direction=Message.Direction.OUTBOUND, status=Message.Status.SENT)
        for _ in range(outbound)
    ]
    made += [
        MessageFactory(chat=chat, direction=Message.Direction.OUTBOUND, status=Message.Status.FAILED)
        for _ in range(failed)
    ]
    Message.objects.filter(pk__in=[message.pk for message in made]).update(created_at=when)


def _check(number=None, *, server=None, healthy=True, latency=10, minutes_ago=1, provider=None):
    return HealthCheck.objects.create(
        provider=provider or (number.provider if number else server.provider),
        number=number,
        server=server,
        organization=number.organization if number else None,
        is_healthy=healthy,
        latency_ms=latency,
        error="" if healthy else "it failed",
        checked_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


@pytest.fixture
def workspace(org_admin):
    """Two organizations with numbers, messages and checks; `org_admin` administers "Beta Bakery"."""
    beta = org_admin.organization
    acme = OrganizationFactory(name="Acme Dental")
    server = ProviderServerFactory(is_healthy=False, last_error="connection refused")
    beta_evolution = _connected(beta, ProviderName.EVOLUTION, server=server)
    beta_green = _connected(beta, ProviderName.GREEN_API)
    acme_evolution = _connected(acme, ProviderName.EVOLUTION, server=server)
    acme_silent = _connected(acme, ProviderName.FAKE, silence_restarted_at=timezone.now())
    beta_flagged = _connected(beta, ProviderName.FAKE, silence_restarted_at=timezone.now(), silent_since=timezone.now())
    WhatsAppNumberFactory(organization=beta, provider=ProviderName.EVOLUTION, state=WhatsAppNumber.State.DISCONNECTED)
    _messages(beta_evolution, inbound=3, outbound=2, failed=1)
    _messages(beta_green, inbound=1, minutes_ago=5)
    _messages(acme_evolution, inbound=4, outbound=4, failed=2, minutes_ago=2)
    _messages(acme_evolution, inbound=7, minutes_ago=90)  # outside the last hour and the chart
    _check(beta_evolution, latency=20)
    _check(beta_evolution, latency=40, healthy=False)  # its latest: unhealthy
    _check(beta_green, latency=100, healthy=False, minutes_ago=3)
    _check(beta_green, latency=50, minutes_ago=2)  # its latest: healthy again
    _check(acme_evolution, latency=30, healthy=False)
    _check(acme_evolution, latency=5, minutes_ago=120)  # older than an hour
    _check(server=server, latency=300, healthy=False)
    hourly_statistics_refresh()
    return {
        "beta": beta,
        "acme": acme,
        "server": server,
        "beta_evolution": beta_evolution,
        "acme_evolution": acme_evolution,
        "acme_silent": acme_silent,
        "beta_flagged": beta_flagged,
    }


def _direct(scope_ids=None):
    """The same figures counted straight from the rows, independently of messaging.monitoring."""
    hour_ago = timezone.now() - timedelta(hours=1)
    numbers = WhatsAppNumber.objects.filter(state="connected", archived_at__isnull=True)
    messages = Message.objects.all()
    checks = HealthCheck.objects.filter(checked_at__gte=hour_ago)
    if scope_ids is not None:
        numbers = numbers.filter(organization_id__in=scope_ids)
        messages = messages.filter(organization_id__in=scope_ids)
        checks = checks.filter(organization_id__in=scope_ids)
    by_provider = {}
    for number in numbers:
        by_provider[number.provider] = by_provider.get(number.provider, 0) + 1
    recent_out = messages.filter(created_at__gte=hour_ago, direction="out")
    latency = {}
    for check in checks:
        latency.setdefault(check.provider, []).append(check.latency_ms)
    return {
        "by_provider": by_provider,
        "chart_total": messages.filter(created_at__gte=timezone.now() - timedelta(minutes=30)).count(),
        "sends_failed": recent_out.filter(status="failed").count(),
        "sends_finished": recent_out.count(),
        "checks_failed": checks.filter(is_healthy=False).count(),
        "checks_total": checks.count(),
        "latency": {provider: round(sum(values) / len(values), 1) for provider, values in latency.items()},
    }


def test_platform_figures_equal_the_rows_behind_them(workspace):
    figures = monitoring_figures(scope=PLATFORM)
    direct = _direct()

    assert figures["active_numbers_by_provider"] == direct["by_provider"] == {"evolution": 2, "green_api": 1, "fake": 2}
    assert sum(bucket["in"] + bucket["out"] for bucket in figures["throughput"]) == direct["chart_total"] == 17
    assert len(figures["throughput"]) == 30
    sends = figures["error_rates"]["sends"]
    assert (sends["failed"], sends["finished"]) == (direct["sends_failed"], direct["sends_finished"]) == (3, 9)
    assert sends["rate"] == pytest.approx(3 / 9)
    checks = figures["error_rates"]["health_checks"]
    assert (checks["failed"], checks["total"]) == (direct["checks_failed"], direct["checks_total"]) == (4, 6)
    assert figures["latency_by_provider"] == direct["latency"]
    assert figures["latency_by_provider"]["evolution"] == pytest.approx((20 + 40 + 30 + 300) / 4, abs=0.1)
    assert figures["top_organizations"] == [
        {"id": workspace["acme"].pk, "name": "Acme Dental", "messages": 17},
        {"id": workspace["beta"].pk, "name": "Beta Bakery", "messages": 7},
    ]
    assert {(row["id"], row["status"]) for row in figures["silent_numbers"]} == {
        (workspace["acme_silent"].pk, "restarted"),
        (workspace["beta_flagged"].pk, "flagged"),
    }
    assert {row["id"] for row in figures["unhealthy_numbers"]} == {
        workspace["beta_evolution"].pk,
        workspace["acme_evolution"].pk,
    }
    assert [row["id"] for row in figures["unhealthy_servers"]] == [workspace["server"].pk]
    assert "queue_depth" in figures


def test_an_organization_admin_sees_only_their_organization(workspace, org_admin_client):
    figures = org_admin_client.get(reverse("admin:monitoring-data")).json()
    direct = _direct({workspace["beta"].pk})

    assert figures["scope"] == "organization"
    assert figures["active_numbers_by_provider"] == direct["by_provider"] == {"evolution": 1, "green_api": 1, "fake": 1}
    assert sum(bucket["in"] + bucket["out"] for bucket in figures["throughput"]) == direct["chart_total"] == 7
    sends = figures["error_rates"]["sends"]
    assert (sends["failed"], sends["finished"]) == (direct["sends_failed"], direct["sends_finished"]) == (1, 3)
    checks = figures["error_rates"]["health_checks"]
    assert (checks["failed"], checks["total"]) == (direct["checks_failed"], direct["checks_total"]) == (2, 4)
    assert figures["latency_by_provider"] == direct["latency"]
    assert figures["top_organizations"] == [{"id": workspace["beta"].pk, "name": "Beta Bakery", "messages": 7}]
    assert [row["id"] for row in figures["silent_numbers"]] == [workspace["beta_flagged"].pk]
    assert [row["id"] for row in figures["unhealthy_numbers"]] == [workspace["beta_evolution"].pk]
    # Shared infrastructure is the platform's business.
    assert "unhealthy_servers" not in figures
    assert "queue_depth" not in figures
    page = org_admin_client.get(reverse("admin:monitoring")).content.decode()
    assert "Acme Dental" not in page
    assert "Beta Bakery" in page


def test_the_page_renders_for_a_superuser_with_its_figures_and_script(workspace, superuser_client):
    response = superuser_client.get(reverse("admin:monitoring"))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="monitoring-figures"' in page
    assert "js/dashboard.js" in page
    assert 'id="throughput-chart"' in page
    assert "Acme Dental" in page  # in the embedded figures


@pytest.mark.parametrize("who", ["anonymous", "agent", "staff agent", "admin without staff"])
def test_people_who_are_not_admins_cannot_open_the_dashboard(client, workspace, who):
    if who == "agent":
        client.force_login(MembershipFactory(organization=workspace["beta"]).user)
    elif who == "staff agent":
        client.force_login(MembershipFactory(organization=workspace["beta"], user__is_staff=True).user)
    elif who == "admin without staff":
        client.force_login(MembershipFactory(organization=workspace["beta"], role=Membership.Role.ADMIN).user)

    for name in ["admin:monitoring", "admin:monitoring-data"]:
        response = client.get(reverse(name))
        assert response.status_code == 302, name
        assert response["Location"].startswith(reverse("admin:login")), name


def test_a_staff_user_of_no_organization_is_refused(client, db):
    client.force_login(UserFactory(is_staff=True))

    assert client.get(reverse("admin:monitoring-data")).status_code == 302


def test_queue_depth_is_the_length_of_the_brokers_queue(db):
    with broker_queue() as queue:
        assert queue_depth() == {queue: 0}
        for _ in range(3):
            health_checks_prune_task.delay()  # no worker consumes this queue: they wait there

        assert queue_depth() == {queue: 3}


def test_names_on_the_dashboard_cannot_inject_markup(superuser_client):
    organization = OrganizationFactory(name="<script>alert('x')</script>")
    number = _connected(organization, ProviderName.FAKE, name="<img src=x onerror=alert(1)>")
    _messages(number, inbound=1)
    hourly_statistics_refresh()

    page = superuser_client.get(reverse("admin:monitoring")).content.decode()

    assert "<script>alert(" not in page
    assert "<img src=x" not in page
    assert "\\u003Cscript\\u003E" in page  # the name is there, as JSON-escaped data for dashboard.js
