"""The health beat against the fake Evolution server: results stored, dead servers open their circuit,
silent numbers restarted once and then flagged."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import app
from config.periodic import periodic_tasks_register
from crm.models import HealthCheck, Membership, ProviderServer, WhatsAppNumber
from crm.selectors import number_provider_target
from messaging.models import Event, Message
from messaging.services.health import health_check_beat, number_health_check, number_is_silent, server_health_check
from providers.breaker import breaker_state
from providers.evolution import EvolutionAdapter
from providers.fakes.evolution import FakeEvolutionServer
from providers.registry import ProviderName
from tests.factories import (
    ChatFactory,
    MembershipFactory,
    MessageFactory,
    ProviderServerFactory,
    WhatsAppNumberFactory,
)
from tests.messaging.conftest import FAKE_EVOLUTION_API_KEY
from tests.messaging.outbound_worker import OutboxWorker, broker_queue, wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _health_settings(settings):
    settings.PROVIDER_BREAKER_FAILURES = 5
    settings.PROVIDER_BREAKER_RESET_SECONDS = 60
    settings.SILENT_AFTER_MINUTES = 30


@pytest.fixture
def evolution(fake_evolution):
    return fake_evolution


@pytest.fixture
def server_row(evolution):
    return ProviderServerFactory(base_url=evolution.url, api_key=FAKE_EVOLUTION_API_KEY)


@pytest.fixture
def connected_number(evolution, server_row):
    number = WhatsAppNumberFactory(provider=ProviderName.EVOLUTION, server=server_row)
    EvolutionAdapter().provision(number_provider_target(number))
    evolution.scan(number.instance_name)
    WhatsAppNumber.objects.filter(pk=number.pk).update(state=WhatsAppNumber.State.CONNECTED)
    number.refresh_from_db()
    return number


def _restarts(evolution: FakeEvolutionServer, number: WhatsAppNumber) -> int:
    path = f"/instance/restart/{number.instance_name}"
    return sum(1 for request in evolution.requests if request.method == "POST" and request.path == path)


def _next_beat(number: WhatsAppNumber) -> None:
    """Pretend the restart happened one beat (5 minutes) ago."""
    WhatsAppNumber.objects.filter(pk=number.pk).update(silence_restarted_at=timezone.now() - timedelta(minutes=5))


def _unacknowledged_send(number: WhatsAppNumber, *, minutes_ago: int, status: str = Message.Status.SENT) -> Message:
    chat = ChatFactory(organization=number.organization, number=number)
    message = MessageFactory(chat=chat, direction=Message.Direction.OUTBOUND, status=status)
    sent_at = timezone.now() - timedelta(minutes=minutes_ago)
    Message.objects.filter(pk=message.pk).update(created_at=sent_at, updated_at=sent_at, timestamp=sent_at)
    return message


# --- the beat and servers ---------------------------------------------------------------------------
def test_health_beat_checks_every_server_and_connected_number_and_stores_results(
    eager_tasks, server_row, connected_number
):
    WhatsAppNumberFactory(provider=ProviderName.EVOLUTION, server=server_row, state=WhatsAppNumber.State.DISCONNECTED)

    assert health_check_beat() == {"servers": 1, "numbers": 1}

    server_check = HealthCheck.objects.get(server=server_row, number__isnull=True)
    number_check = HealthCheck.objects.get(number=connected_number)
    assert server_check.is_healthy
    assert server_check.error == ""
    assert number_check.is_healthy
    assert number_check.organization_id == connected_number.organization_id
    assert number_check.provider == ProviderName.EVOLUTION
    assert number_check.server_id == server_row.pk
    assert HealthCheck.objects.count() == 2
    server_row.refresh_from_db()
    assert server_row.is_healthy
    assert server_row.last_checked_at is not None
    assert server_row.last_latency_ms == server_check.latency_ms
    assert breaker_state(f"server-{server_row.pk}") == "closed"


def test_a_stopped_server_is_recorded_unhealthy_and_opens_its_breaker(evolution, server_row):
    evolution.stop()

    check = server_health_check(server_id=server_row.pk)

    assert not check.is_healthy
    assert "could not connect" in check.error
    server_row.refresh_from_db()
    assert server_row.is_healthy is False
    assert server_row.last_error == check.error
    assert breaker_state(f"server-{server_row.pk}") == "open"


@pytest.mark.parametrize("fault", [{"hang": True}, {"error_rate": 1.0}])
def test_a_hanging_or_failing_server_opens_its_breaker_and_its_numbers_calls_stop(evolution, connected_number, fault):
    server = connected_number.server
    evolution.faults_set(**fault)
    try:
        check = server_health_check(server_id=server.pk)

        assert not check.is_healthy
        assert breaker_state(f"server-{server.pk}") == "open"
        calls_before = len(evolution.requests)
        outcome = number_health_check(number_id=connected_number.pk)
        assert not outcome.check.is_healthy
        assert "paused" in outcome.check.error  # refused by the open circuit
        assert len(evolution.requests) == calls_before  # the dead server was not called again
    finally:
        evolution.faults_set(hang=False, error_rate=0.0)


def test_a_server_answering_a_permanent_error_is_unhealthy_but_keeps_its_circuit_closed(evolution, server_row):
    # A 4xx means the server is up and refuses us (a wrong path or key): a configuration problem,
    # which pausing every send would not fix.
    evolution.fail_next(1, 404)

    check = server_health_check(server_id=server_row.pk)

    assert not check.is_healthy
    assert breaker_state(f"server-{server_row.pk}") == "closed"


def test_a_number_the_provider_reports_disconnected_is_unhealthy_and_its_state_recorded(evolution, connected_number):
    evolution.disconnect(connected_number.instance_name, status_reason=428)

    outcome = number_health_check(number_id=connected_number.pk)

    assert not outcome.check.is_healthy
    assert "disconnected" in outcome.check.error
    connected_number.refresh_from_db()
    assert connected_number.state == WhatsAppNumber.State.DISCONNECTED
    event = Event.objects.filter(number=connected_number, type="number.state").latest("sequence")
    assert event.payload["state"] == "disconnected"


def test_archived_and_unconnected_numbers_are_not_checked(server_row):
    disconnected = WhatsAppNumberFactory(server=server_row, state=WhatsAppNumber.State.DISCONNECTED)
    archived = WhatsAppNumberFactory(
        server=server_row, state=WhatsAppNumber.State.DISCONNECTED, archived_at=timezone.now()
    )

    assert number_health_check(number_id=disconnected.pk) is None
    assert number_health_check(number_id=archived.pk) is None
    assert not HealthCheck.objects.filter(number__isnull=False).exists()


# --- silent connections ------------------------------------------------------------------------------
def test_a_silent_number_is_restarted_once_then_flagged_then_cleared_when_heard_from(evolution, connected_number):
    _unacknowledged_send(connected_number, minutes_ago=45)

    first = number_health_check(number_id=connected_number.pk)

    assert first.silence == "restarted"
    assert _restarts(evolution, connected_number) == 1
    connected_number.refresh_from_db()
    assert connected_number.silence_restarted_at is not None
    assert connected_number.silent_since is None
    restart_event = Event.objects.filter(number=connected_number, type="number.state").latest("sequence")
    assert "restarting" in restart_event.payload["reason"]
    # A check right after the restart (two tasks at once) neither restarts again nor flags yet.
    assert number_health_check(number_id=connected_number.pk).silence == "quiet"
    assert _restarts(evolution, connected_number) == 1
    _next_beat(connected_number)

    second = number_health_check(number_id=connected_number.pk)

    assert second.silence == "flagged"
    assert _restarts(evolution, connected_number) == 1  # restarted once, never again
    connected_number.refresh_from_db()
    assert connected_number.silent_since is not None
    flag_event = Event.objects.filter(number=connected_number, type="number.state").latest("sequence")
    assert "Still silent" in flag_event.payload["reason"]
    assert flag_event.payload["silent_since"] == connected_number.silent_since.isoformat()

    assert number_health_check(number_id=connected_number.pk).silence == "quiet"
    assert _restarts(evolution, connected_number) == 1

    MessageFactory(chat=ChatFactory(organization=connected_number.organization, number=connected_number))
    recovered = number_health_check(number_id=connected_number.pk)

    assert recovered.silence == "recovered"
    connected_number.refresh_from_db()
    assert connected_number.silence_restarted_at is None
    assert connected_number.silent_since is None


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unacknowledged for 45 minutes", True),
        ("unacknowledged for 10 minutes only", False),
        ("delivered, not unacknowledged", False),
        ("a message arrived 5 minutes ago", False),
        ("a receipt arrived 5 minutes ago", False),
        ("the only send is two days old", False),
        ("nothing sent", False),
    ],
)
def test_silence_needs_nothing_heard_and_an_unacknowledged_send(connected_number, case, expected):
    number = connected_number
    if case == "unacknowledged for 45 minutes":
        _unacknowledged_send(number, minutes_ago=45)
    elif case == "unacknowledged for 10 minutes only":
        _unacknowledged_send(number, minutes_ago=10)
    elif case == "delivered, not unacknowledged":
        _unacknowledged_send(number, minutes_ago=45, status=Message.Status.DELIVERED)
    elif case == "a message arrived 5 minutes ago":
        _unacknowledged_send(number, minutes_ago=45)
        MessageFactory(chat=ChatFactory(organization=number.organization, number=number))
    elif case == "a receipt arrived 5 minutes ago":
        _unacknowledged_send(number, minutes_ago=45)
        receipt = _unacknowledged_send(number, minutes_ago=50, status=Message.Status.READ)
        Message.objects.filter(pk=receipt.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    elif case == "the only send is two days old":
        _unacknowledged_send(number, minutes_ago=2 * 24 * 60)

    assert number_is_silent(number_id=number.pk, now=timezone.now()) is expected


def test_a_failed_restart_is_reported_on_the_number_and_it_is_flagged_next_time(evolution, connected_number):
    _unacknowledged_send(connected_number, minutes_ago=45)
    evolution.connect_error = "Baileys could not start"

    assert number_health_check(number_id=connected_number.pk).silence == "restarted"

    _next_beat(connected_number)
    reasons = list(
        Event.objects.filter(number=connected_number, type="number.state")
        .order_by("sequence")
        .values_list("payload__reason", flat=True)
    )
    assert any("Could not restart the silent session" in reason for reason in reasons)
    assert number_health_check(number_id=connected_number.pk).silence == "flagged"


def test_organization_admins_see_a_flagged_number_on_the_home_page_and_in_admin(client, connected_number):
    connected_number.silence_restarted_at = connected_number.silent_since = timezone.now()
    connected_number.save()
    admin = MembershipFactory(
        organization=connected_number.organization, role=Membership.Role.ADMIN, user__is_staff=True
    )
    agent = MembershipFactory(organization=connected_number.organization)

    client.force_login(admin.user)
    home = client.get(reverse("crm:home")).content.decode()
    changelist = client.get(reverse("admin:crm_whatsappnumber_changelist")).content.decode()
    client.force_login(agent.user)
    agent_home = client.get(reverse("crm:home")).content.decode()

    assert "connected but silent" in home
    assert connected_number.name in home
    assert "Silent since" in changelist
    assert "connected but silent" not in agent_home


def test_a_server_deleted_before_its_check_is_skipped(server_row):
    server_id = server_row.pk
    ProviderServer.objects.filter(pk=server_id).delete()

    assert server_health_check(server_id=server_id) is None


@pytest.mark.django_db(transaction=True)
def test_the_registered_beat_runs_its_checks_in_a_real_worker(evolution, server_row, connected_number, settings):
    periodic_tasks_register()
    row = PeriodicTask.objects.get(name="messaging.health_check")
    assert (row.interval.every, row.interval.period) == (5, IntervalSchedule.MINUTES)

    with (
        broker_queue() as queue,
        OutboxWorker(queue, concurrency=1, env={"PUBLIC_BASE_URL": settings.PUBLIC_BASE_URL}),
    ):
        app.send_task(row.task)  # what beat sends when the row is due

        assert wait_until(lambda: HealthCheck.objects.count() == 2, timeout=60)

    assert set(HealthCheck.objects.values_list("server_id", "number_id", "is_healthy")) == {
        (server_row.pk, None, True),
        (server_row.pk, connected_number.pk, True),
    }
