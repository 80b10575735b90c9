"""Cleanup beats remove exactly what qualifies: long-gone self-hosted numbers, old health rows."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from crm.models import HealthCheck, WhatsAppNumber
from crm.selectors import number_provider_target
from crm.services import number_server_place
from messaging.models import Event, Message
from messaging.selectors import numbers_of_member
from messaging.services.cleanup import health_checks_prune, numbers_archive
from providers.evolution import EvolutionAdapter
from providers.registry import ProviderName
from tests.factories import (
    ChatFactory,
    MembershipFactory,
    MessageFactory,
    OrganizationFactory,
    ProviderServerFactory,
    WhatsAppNumberFactory,
)
from tests.messaging.conftest import FAKE_EVOLUTION_API_KEY

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
API_KEY = FAKE_EVOLUTION_API_KEY


@pytest.fixture(autouse=True)
def _cleanup_settings(settings):
    settings.NUMBER_ARCHIVE_AFTER_DAYS = 90
    settings.HEALTH_RETENTION_DAYS = 30


@pytest.fixture
def evolution(fake_evolution):
    return fake_evolution


def _number(server, *, state, seen_days_ago, provider=ProviderName.EVOLUTION, provision=True, **fields):
    number = WhatsAppNumberFactory(provider=provider, server=server, **fields)
    if provision:
        EvolutionAdapter().provision(number_provider_target(number))
    seen = timezone.now() - timedelta(days=seen_days_ago) if seen_days_ago is not None else None
    WhatsAppNumber.objects.filter(pk=number.pk).update(state=state, last_seen_at=seen)
    number.refresh_from_db()
    return number


def test_archive_takes_exactly_the_long_unseen_disconnected_self_hosted_numbers(
    evolution, eager_tasks, django_capture_on_commit_callbacks
):
    server = ProviderServerFactory(base_url=evolution.url, api_key=API_KEY)
    state = WhatsAppNumber.State
    qualifying = {
        "disconnected 91 days": _number(server, state=state.DISCONNECTED, seen_days_ago=91),
        "logged out 200 days": _number(server, state=state.LOGGED_OUT, seen_days_ago=200),
        "banned 95 days": _number(server, state=state.BANNED, seen_days_ago=95),
    }
    never_seen_old = _number(server, state=state.DISCONNECTED, seen_days_ago=None)
    WhatsAppNumber.objects.filter(pk=never_seen_old.pk).update(created_at=timezone.now() - 100 * DAY)
    qualifying["never seen, added 100 days ago"] = never_seen_old
    staying = {
        "disconnected 89 days": _number(server, state=state.DISCONNECTED, seen_days_ago=89),
        "connected, unseen 200 days": _number(server, state=state.CONNECTED, seen_days_ago=200),
        "waiting for a scan 200 days": _number(server, state=state.WAITING_FOR_QR_SCAN, seen_days_ago=200),
        "never seen, added today": _number(server, state=state.DISCONNECTED, seen_days_ago=None),
        "hosted provider, 200 days": _number(
            None, state=state.DISCONNECTED, seen_days_ago=200, provider=ProviderName.GREEN_API, provision=False
        ),
    }
    staying["disconnected 100 days, a message yesterday"] = _number(server, state=state.DISCONNECTED, seen_days_ago=100)
    yesterday = MessageFactory(
        chat=ChatFactory(
            organization=staying["disconnected 100 days, a message yesterday"].organization,
            number=staying["disconnected 100 days, a message yesterday"],
        )
    )
    Message.objects.filter(pk=yesterday.pk).update(created_at=timezone.now() - DAY)
    not_provisioned = WhatsAppNumberFactory(provider=ProviderName.EVOLUTION, server=server)
    WhatsAppNumber.objects.filter(pk=not_provisioned.pk).update(created_at=timezone.now() - 200 * DAY)
    chat = ChatFactory(
        organization=qualifying["disconnected 91 days"].organization, number=qualifying["disconnected 91 days"]
    )
    old_message = MessageFactory(chat=chat)
    Message.objects.filter(pk=old_message.pk).update(created_at=timezone.now() - 95 * DAY)

    with django_capture_on_commit_callbacks(execute=True):
        archived = numbers_archive()

    assert sorted(archived) == sorted(number.pk for number in qualifying.values())
    for label, number in qualifying.items():
        number.refresh_from_db()
        assert number.archived_at is not None, label
        assert number.instance_name not in evolution.instances, label  # removed from its server
        event = Event.objects.filter(number=number, type="number.state").latest("sequence")
        assert "Archived" in event.payload["reason"]
    for label, number in [*staying.items(), ("not provisioned", not_provisioned)]:
        number.refresh_from_db()
        assert number.archived_at is None, label
    for label in ["disconnected 89 days", "connected, unseen 200 days", "waiting for a scan 200 days"]:
        assert staying[label].instance_name in evolution.instances, label
    # History kept: the chat and its message are still there.
    assert Message.objects.filter(chat=chat).count() == 1
    # A second run finds nothing more.
    assert numbers_archive() == []


def test_archived_numbers_leave_member_lists_and_take_no_room_on_their_server(evolution):
    server = ProviderServerFactory(base_url=evolution.url, api_key=API_KEY, capacity=1)
    archived = _number(server, state=WhatsAppNumber.State.DISCONNECTED, seen_days_ago=100)
    numbers_archive()
    member = MembershipFactory(organization=archived.organization)

    assert archived.pk not in set(numbers_of_member(user=member.user).values_list("id", flat=True))
    newcomer = WhatsAppNumberFactory(provider=ProviderName.EVOLUTION, organization=OrganizationFactory())
    assert number_server_place(number=newcomer) == server  # the archived one takes no room


def test_archive_leaves_a_number_that_reconnected_after_it_was_listed(evolution):
    server = ProviderServerFactory(base_url=evolution.url, api_key=API_KEY)
    number = _number(server, state=WhatsAppNumber.State.DISCONNECTED, seen_days_ago=100)
    from messaging.services.cleanup import number_archive

    WhatsAppNumber.objects.filter(pk=number.pk).update(state=WhatsAppNumber.State.CONNECTED)

    assert number_archive(number_id=number.pk, now=timezone.now()) is False
    number.refresh_from_db()
    assert number.archived_at is None


def _health_row(*, days_ago: float, minutes: int = 0) -> HealthCheck:
    return HealthCheck.objects.create(
        provider=ProviderName.EVOLUTION,
        server=ProviderServerFactory(),
        is_healthy=True,
        latency_ms=5,
        checked_at=timezone.now() - timedelta(days=days_ago, minutes=minutes),
    )


def test_health_rows_past_retention_are_pruned_in_bounded_batches():
    old = [_health_row(days_ago=30, minutes=1) for _ in range(5)]
    kept = [_health_row(days_ago=30, minutes=-1), _health_row(days_ago=1)]
    old.append(_health_row(days_ago=400))

    with CaptureQueriesContext(connection) as queries:
        deleted = health_checks_prune(batch_size=2)

    assert deleted == 6
    assert set(HealthCheck.objects.values_list("id", flat=True)) == {row.pk for row in kept}
    deletes = [query["sql"] for query in queries.captured_queries if query["sql"].startswith("DELETE")]
    assert len(deletes) == 4  # ranges of two ids from each next old row, never one DELETE for all
    assert all('"id" >= ' in sql and '"id" < ' in sql for sql in deletes)
    assert health_checks_prune(batch_size=2) == 0


def test_the_home_page_counts_leave_archived_numbers_out(client, evolution):
    server = ProviderServerFactory(base_url=evolution.url, api_key=API_KEY)
    archived = _number(server, state=WhatsAppNumber.State.DISCONNECTED, seen_days_ago=100)
    WhatsAppNumberFactory(organization=archived.organization, state=WhatsAppNumber.State.CONNECTED)
    numbers_archive()
    member = MembershipFactory(organization=archived.organization)
    client.force_login(member.user)

    overview = client.get(reverse("crm:home")).context["overview"]

    assert (overview["numbers"], overview["connected_numbers"]) == (1, 1)


@pytest.mark.django_db
def test_succeeded_webhook_deliveries_past_retention_are_pruned_failed_and_recent_ones_kept(settings):
    from messaging.events import event_append
    from messaging.models import WebhookAttempt, WebhookDelivery
    from messaging.services.cleanup import webhook_deliveries_prune
    from messaging.services.webhooks_out import webhook_subscription_create
    from tests.factories import ChatFactory

    settings.WEBHOOK_LOG_RETENTION_DAYS = 30
    chat = ChatFactory()
    subscription = webhook_subscription_create(
        organization=chat.organization, url="https://example.test/hook", events=["chat.assigned"]
    )

    def delivery(status: str, age_days: int) -> WebhookDelivery:
        event = event_append(organization_id=chat.organization_id, type="chat.assigned", chat_id=chat.pk, data={})
        made = WebhookDelivery.objects.create(
            organization=chat.organization, subscription=subscription, event=event, event_type=event.type, status=status
        )
        WebhookAttempt.objects.create(delivery=made, status_code=200, duration_ms=5)
        old = timezone.now() - timedelta(days=age_days)
        WebhookDelivery.objects.filter(pk=made.pk).update(updated_at=old)
        WebhookAttempt.objects.filter(delivery=made).update(created_at=old)
        return made

    old_success = delivery("succeeded", 31)
    recent_success = delivery("succeeded", 29)
    old_failure = delivery("failed", 90)
    waiting = delivery("pending", 31)

    assert webhook_deliveries_prune(batch_size=1) == 1
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {recent_success.pk, old_failure.pk, waiting.pk}
    assert not WebhookAttempt.objects.filter(delivery_id=old_success.pk).exists()
    assert WebhookAttempt.objects.count() == 3
