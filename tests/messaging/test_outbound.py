"""The outbox without workers: accepting sends, one delivery run at a time, the sweep, the API.

Delivery runs here are the task's service called in the test process, against the fake Evolution
server through the real Evolution adapter; tests/messaging/test_outbound_workers.py runs real
Celery workers.
"""

import threading
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.contrib import admin
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from crm.models import WhatsAppNumber
from crm.services import number_provision
from messaging.events import events_after
from messaging.models import DailyUsage, Message
from messaging.services.outbound import (
    CHAT_MESSAGES_PER_TASK,
    IdempotencyKeyReusedError,
    MessageStateError,
    QuotaExceededError,
    message_cancel,
    message_deliver,
    message_retry,
    message_send,
    outbox_sweep,
    retry_delay,
)
from providers.fakes.evolution import FakeEvolutionServer
from tests.factories import (
    ChatFactory,
    ContactFactory,
    MembershipFactory,
    OrganizationFactory,
    PlanFactory,
    ProviderServerFactory,
    WhatsAppNumberFactory,
)
from tests.messaging.outbound_worker import broker_queue


@pytest.fixture(autouse=True)
def _outbox_settings(settings):
    settings.PROVIDER_CONNECT_TIMEOUT = 1.0
    settings.PROVIDER_READ_TIMEOUT = 1.0
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9"  # the fake's webhooks go nowhere: not under test here
    settings.MESSAGE_MAX_ATTEMPTS = 3


@pytest.fixture(autouse=True)
def queue():
    """Tasks this test enqueues (retries included) go to a queue of its own, counted, then deleted."""
    with broker_queue() as name:
        yield name


def queued_tasks(queue: str) -> int:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        return client.llen(queue)
    finally:
        client.close()


@pytest.fixture
def evolution():
    server = FakeEvolutionServer(webhook_delay_seconds=0, auto_status=False).start()
    yield server
    server.stop()


def evolution_number(server: FakeEvolutionServer, *, connected: bool = True, **fields) -> WhatsAppNumber:
    provider_server = ProviderServerFactory(base_url=server.url, api_key=server.api_key)
    number = WhatsAppNumberFactory(provider="evolution", **fields)
    if connected:
        number = number_provision(number_id=number.pk)
        server.scan(number.instance_name)
        # The echoes and statuses Evolution would post are the inbound side's business, not these tests'.
        server.instances[number.instance_name].webhook["enabled"] = False
    provider_server.refresh_from_db()
    return number


def evolution_chat(server: FakeEvolutionServer, **contact_fields):
    number = evolution_number(server)
    contact = ContactFactory(organization=number.organization, **contact_fields)
    return ChatFactory(organization=number.organization, number=number, contact=contact)


def sent_texts(server: FakeEvolutionServer) -> list[str]:
    return [raw["message"]["conversation"] for instance in server.instances.values() for raw in list(instance.messages)]


def send(chat, text="Hello", **kwargs) -> Message:
    message, created = message_send(organization=chat.organization, chat=chat, text=text, **kwargs)
    assert created
    return message


# --- accepting -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_send_queues_the_message_updates_the_chat_and_logs_an_event():
    chat = ChatFactory()
    message = send(chat, "Your order is ready")

    message.refresh_from_db()
    chat.refresh_from_db()
    assert (message.status, message.direction, message.attempts, message.max_attempts) == ("queued", "out", 0, 3)
    assert chat.last_message_preview == "Your order is ready"
    assert chat.last_message_at == message.timestamp
    [event] = events_after(organization_id=chat.organization_id, after=0)
    assert (event.type, event.chat, event.data["message"]) == ("message.created", chat.pk, message.pk)
    assert DailyUsage.objects.get(organization=chat.organization).messages_sent == 1


@pytest.mark.django_db
def test_same_idempotency_key_returns_the_first_message_and_counts_once():
    chat = ChatFactory()
    first, created_first = message_send(organization=chat.organization, chat=chat, text="Hi", idempotency_key="k1")
    again, created_again = message_send(organization=chat.organization, chat=chat, text="Hi", idempotency_key="k1")

    assert (created_first, created_again) == (True, False)
    assert again.pk == first.pk
    assert Message.objects.filter(chat=chat).count() == 1
    assert DailyUsage.objects.get(organization=chat.organization).messages_sent == 1


@pytest.mark.django_db
def test_a_replay_over_the_quota_answers_the_first_message_and_a_new_send_is_refused():
    chat = ChatFactory(organization__plan=PlanFactory(code="one-a-day", name="One", messages_per_day=1))
    first, _ = message_send(organization=chat.organization, chat=chat, text="Hi", idempotency_key="k1")
    again, created = message_send(organization=chat.organization, chat=chat, text="Hi", idempotency_key="k1")
    assert (again.pk, created) == (first.pk, False)
    with pytest.raises(QuotaExceededError):
        message_send(organization=chat.organization, chat=chat, text="Hi", idempotency_key="k2")
    assert Message.objects.filter(chat=chat).count() == 1
    assert DailyUsage.objects.get(organization=chat.organization).messages_sent == 1


@pytest.mark.django_db
def test_idempotency_key_reused_for_another_text_is_refused():
    chat = ChatFactory()
    message_send(organization=chat.organization, chat=chat, text="Hi", idempotency_key="k1")
    with pytest.raises(IdempotencyKeyReusedError):
        message_send(organization=chat.organization, chat=chat, text="Something else", idempotency_key="k1")


@pytest.mark.django_db
def test_same_key_in_another_organization_is_another_message():
    first, second = ChatFactory(), ChatFactory()
    message_send(organization=first.organization, chat=first, text="Hi", idempotency_key="shared")
    _, created = message_send(organization=second.organization, chat=second, text="Hi", idempotency_key="shared")
    assert created


def _in_threads(count: int, work) -> list:
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as error:
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.django_db(transaction=True)
def test_racing_sends_with_one_key_make_one_message_and_one_delivery_task(queue):
    chat = ChatFactory()
    results = _in_threads(
        8, lambda _: message_send(organization=chat.organization, chat=chat, text="Hi", idempotency_key="double")
    )

    assert not [result for result in results if isinstance(result, Exception)]
    assert sorted(created for _, created in results) == [False] * 7 + [True]
    assert len({message.pk for message, _ in results}) == 1
    assert Message.objects.filter(chat=chat).count() == 1
    assert DailyUsage.objects.get(organization=chat.organization).messages_sent == 1
    assert queued_tasks(queue) == 1


@pytest.mark.django_db(transaction=True)
def test_quota_refusals_are_exact_under_concurrent_sends(queue):
    plan = PlanFactory(code="tiny", name="Tiny", messages_per_day=10)
    chat = ChatFactory(organization=OrganizationFactory(plan=plan))
    results = _in_threads(20, lambda index: message_send(organization=chat.organization, chat=chat, text=f"m{index}"))

    accepted = [result for result in results if isinstance(result, tuple)]
    refused = [result for result in results if isinstance(result, QuotaExceededError)]
    assert (len(accepted), len(refused)) == (10, 10)
    assert Message.objects.filter(chat=chat).count() == 10
    assert DailyUsage.objects.get(organization=chat.organization).messages_sent == 10
    assert queued_tasks(queue) == 10


@pytest.mark.django_db
def test_over_quota_send_says_when_the_quota_resets_and_writes_nothing():
    plan = PlanFactory(code="one", name="One", messages_per_day=1)
    chat = ChatFactory(organization=OrganizationFactory(plan=plan))
    send(chat, "first")
    with pytest.raises(QuotaExceededError) as refusal:
        send(chat, "second")

    tomorrow = (timezone.now() + timedelta(days=1)).date()
    assert refusal.value.resets_at.date() == tomorrow
    assert refusal.value.resets_at.hour == 0
    assert list(Message.objects.filter(chat=chat).values_list("text", flat=True)) == ["first"]
    assert DailyUsage.objects.get(organization=chat.organization).messages_sent == 1


@pytest.mark.django_db
def test_unlimited_plan_is_counted_but_never_refused():
    plan = PlanFactory(code="agency", name="Agency", messages_per_day=None)
    chat = ChatFactory(organization=OrganizationFactory(plan=plan))
    for index in range(5):
        send(chat, f"m{index}")
    assert DailyUsage.objects.get(organization=chat.organization).messages_sent == 5


# --- delivering ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_delivery_stores_the_provider_id_and_marks_sent(evolution):
    chat = evolution_chat(evolution)
    message = send(chat, "Order #12 shipped")

    assert message_deliver(message_id=message.pk).status == "sent"

    message.refresh_from_db()
    [raw] = evolution.instances[chat.number.instance_name].messages
    assert (message.status, message.attempts) == ("sent", 1)
    assert message.provider_message_id == raw["key"]["id"]
    assert raw["key"]["remoteJid"] == f"{chat.contact.phone.lstrip('+')}@s.whatsapp.net"
    events = events_after(organization_id=chat.organization_id, after=0)
    assert [(event.type, event.data.get("status")) for event in events][-1] == ("message.status", "sent")


@pytest.mark.django_db
def test_a_task_delivered_twice_calls_the_provider_once(evolution):
    chat = evolution_chat(evolution)
    message = send(chat)

    outcomes = [message_deliver(message_id=message.pk).status for _ in range(2)]

    assert outcomes == ["sent", "skipped"]
    assert sent_texts(evolution) == ["Hello"]


@pytest.mark.django_db
def test_first_send_provisions_the_number_on_a_server(evolution):
    number = evolution_number(evolution, connected=False)
    chat = ChatFactory(organization=number.organization, number=number)
    assert number.state == "not_provisioned"
    message = send(chat)

    outcome = message_deliver(message_id=message.pk)

    number.refresh_from_db()
    assert number.server.base_url == evolution.url
    assert number.state == "waiting_for_qr_scan"
    assert number.instance_name in evolution.instances
    # Not scanned yet: Evolution answers "Connection Closed", which is worth retrying.
    assert outcome.status == "retry"
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("queued", 1)
    assert "Connection Closed" in message.error

    evolution.scan(number.instance_name)
    assert message_deliver(message_id=message.pk).status == "sent"
    assert sent_texts(evolution) == ["Hello"]


@pytest.mark.django_db
def test_permanent_error_fails_at_once_with_a_readable_reason(evolution):
    chat = evolution_chat(evolution, phone="+5511900000000")  # ends in 0000: not on WhatsApp
    message = send(chat)

    assert message_deliver(message_id=message.pk).status == "failed"

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("failed", 1)
    assert "is not on WhatsApp" in message.error
    events = events_after(organization_id=chat.organization_id, after=0)
    assert (events[-1].type, events[-1].data["status"]) == ("message.status", "failed")


@pytest.mark.django_db
def test_temporary_errors_retry_then_fail_after_max_attempts(evolution):
    chat = evolution_chat(evolution)
    message = send(chat)
    evolution.fail_next(3, status=503)

    outcomes = [message_deliver(message_id=message.pk) for _ in range(3)]

    assert [outcome.status for outcome in outcomes] == ["retry", "retry", "failed"]
    assert all(0 < outcome.retry_in <= settings.OUTBOX_RETRY_MAX_SECONDS for outcome in outcomes[:2])
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("failed", 3)
    assert message.error.startswith("Gave up after 3 attempts")
    assert "503" in message.error
    assert message_deliver(message_id=message.pk).status == "skipped"
    assert sent_texts(evolution) == []


@pytest.mark.django_db
def test_open_circuit_does_not_spend_attempts(evolution, settings):
    settings.PROVIDER_BREAKER_FAILURES = 1
    chat = evolution_chat(evolution)
    message = send(chat)
    evolution.fail_next(1, status=503)

    assert message_deliver(message_id=message.pk).status == "retry"  # this failure opens the circuit
    calls_before = len(evolution.requests)
    waits = [message_deliver(message_id=message.pk).status for _ in range(3)]

    message.refresh_from_db()
    assert waits == ["retry"] * 3
    assert (message.status, message.attempts) == ("queued", 1)
    assert "paused" in message.error
    assert len(evolution.requests) == calls_before  # nothing reached the provider


def test_retry_delay_grows_is_capped_and_honours_retry_after(settings):
    settings.OUTBOX_RETRY_BASE_SECONDS = 2.0
    settings.OUTBOX_RETRY_MAX_SECONDS = 300.0
    first = [retry_delay(attempt=1) for _ in range(50)]
    late = [retry_delay(attempt=20) for _ in range(50)]
    assert all(1.0 <= delay <= 2.0 for delay in first)
    assert all(150.0 <= delay <= 300.0 for delay in late)
    assert len(set(first)) > 1  # jitter
    assert retry_delay(attempt=1, retry_after=42) == 42
    assert retry_delay(attempt=1, retry_after=10_000) == 300.0


@pytest.mark.django_db
def test_a_chat_message_waits_for_the_older_one(evolution):
    chat = evolution_chat(evolution)
    first, second = send(chat, "first"), send(chat, "second")
    other_chat = ChatFactory(organization=chat.organization, number=chat.number)
    elsewhere = send(other_chat, "other chat")

    assert message_deliver(message_id=second.pk).status == "skipped"
    assert message_deliver(message_id=elsewhere.pk).status == "sent"  # other chats do not wait
    assert message_deliver(message_id=first.pk).status == "sent"
    # The same task went on with the chat's next message, in order; its own task finds it done.
    assert Message.objects.get(pk=second.pk).status == "sent"
    assert message_deliver(message_id=second.pk).status == "skipped"
    assert sent_texts(evolution) == ["other chat", "first", "second"]


@pytest.mark.django_db
def test_one_task_sends_a_bounded_run_of_its_chats_messages(evolution):
    chat = evolution_chat(evolution)
    messages = [send(chat, f"m{index}") for index in range(CHAT_MESSAGES_PER_TASK + 2)]
    assert message_deliver(message_id=messages[0].pk).status == "sent"
    statuses = list(Message.objects.filter(chat=chat).order_by("id").values_list("status", flat=True))
    # The bound hands the rest of a busy chat back to the queue, so other chats get workers too.
    assert statuses == ["sent"] * CHAT_MESSAGES_PER_TASK + ["queued", "queued"]
    assert sent_texts(evolution) == [f"m{index}" for index in range(CHAT_MESSAGES_PER_TASK)]


@pytest.mark.django_db
def test_a_failed_message_no_longer_holds_its_chat_back(evolution):
    chat = evolution_chat(evolution)
    first, second = send(chat, "first"), send(chat, "second")
    evolution.fail_next(1, status=400)  # permanent
    assert message_deliver(message_id=first.pk).status == "failed"
    assert message_deliver(message_id=second.pk).status == "sent"


# --- scheduled, cancelled, retried by hand -----------------------------------------------------------
@pytest.mark.django_db
def test_scheduled_message_waits_for_its_time_without_holding_the_chat(evolution):
    chat = evolution_chat(evolution)
    later = send(chat, "tomorrow", scheduled_at=timezone.now() + timedelta(days=1))
    now = send(chat, "now")

    assert message_deliver(message_id=later.pk).status == "skipped"
    assert message_deliver(message_id=now.pk).status == "sent"
    assert outbox_sweep() == []  # not due: nothing to enqueue

    # As if accepted yesterday for a second ago.
    Message.objects.filter(pk=later.pk).update(
        scheduled_at=timezone.now() - timedelta(seconds=1), updated_at=timezone.now() - timedelta(seconds=2)
    )
    assert outbox_sweep() == [later.pk]  # came due: the sweep enqueues it
    assert message_deliver(message_id=later.pk).status == "sent"
    assert sent_texts(evolution) == ["now", "tomorrow"]


@pytest.mark.django_db
def test_cancelled_message_is_never_sent_and_shows_as_cancelled(evolution):
    chat = evolution_chat(evolution)
    message = send(chat, "tomorrow", scheduled_at=timezone.now() + timedelta(days=1))

    message_cancel(message=message)

    message.refresh_from_db()
    assert message.status == "failed"
    assert message.error.startswith("Cancelled")
    Message.objects.filter(pk=message.pk).update(scheduled_at=timezone.now() - timedelta(seconds=1))
    assert message_deliver(message_id=message.pk).status == "skipped"
    assert sent_texts(evolution) == []


@pytest.mark.django_db
def test_sent_message_cannot_be_cancelled_and_queued_cannot_be_retried(evolution):
    chat = evolution_chat(evolution)
    message = send(chat)
    with pytest.raises(MessageStateError):
        message_retry(message=message)
    message_deliver(message_id=message.pk)
    with pytest.raises(MessageStateError):
        message_cancel(message=message)


@pytest.mark.django_db
def test_failed_message_retried_by_hand_is_sent_with_fresh_attempts(evolution):
    chat = evolution_chat(evolution)
    message = send(chat)
    evolution.fail_next(3, status=503)
    for _ in range(3):
        message_deliver(message_id=message.pk)

    message_retry(message=message)

    message.refresh_from_db()
    assert (message.status, message.attempts, message.error) == ("queued", 0, "")
    assert message_deliver(message_id=message.pk).status == "sent"


# --- the sweep ---------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_sweep_requeues_a_message_left_sending_by_a_dead_worker(evolution, settings):
    settings.OUTBOX_STUCK_AFTER_SECONDS = 60
    chat = evolution_chat(evolution)
    stuck, fresh = send(chat, "stuck"), send(ChatFactory(organization=chat.organization, number=chat.number), "fresh")
    long_ago = timezone.now() - timedelta(minutes=5)
    Message.objects.filter(pk=stuck.pk).update(status="sending", attempts=1, updated_at=long_ago)

    assert outbox_sweep() == [stuck.pk]  # the fresh one is not stuck yet: its task is on its way

    stuck.refresh_from_db()
    assert (stuck.status, stuck.attempts) == ("queued", 1)
    assert message_deliver(message_id=stuck.pk).status == "sent"
    Message.objects.filter(pk=fresh.pk).update(updated_at=long_ago)
    assert outbox_sweep() == [fresh.pk]


@pytest.mark.django_db
def test_sweep_fails_a_message_interrupted_on_its_last_attempt():
    chat = ChatFactory()
    message = send(chat)
    long_ago = timezone.now() - timedelta(hours=1)
    Message.objects.filter(pk=message.pk).update(status="sending", attempts=3, updated_at=long_ago)

    assert outbox_sweep() == []

    message.refresh_from_db()
    assert message.status == "failed"
    assert "interrupted" in message.error


# --- API -----------------------------------------------------------------------------------------------
def send_url(chat_id: int) -> str:
    return reverse("api:message-send", args=[chat_id])


@pytest.fixture
def member_chat(client, db):
    membership = MembershipFactory()
    client.force_login(membership.user)
    return ChatFactory(organization=membership.organization)


def test_api_send_answers_202_with_the_queued_message(client, member_chat):
    response = client.post(send_url(member_chat.pk), {"text": "Hi there"}, content_type="application/json")

    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["text"], body["chat"]) == ("queued", "Hi there", member_chat.pk)
    assert Message.objects.get(pk=body["id"]).sent_by_id == response.wsgi_request.user.pk


def test_api_double_submit_with_one_key_sends_once(client, member_chat):
    first = client.post(
        send_url(member_chat.pk), {"text": "Hi"}, content_type="application/json", headers={"Idempotency-Key": "abc"}
    )
    second = client.post(
        send_url(member_chat.pk), {"text": "Hi"}, content_type="application/json", headers={"Idempotency-Key": "abc"}
    )

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert Message.objects.filter(chat=member_chat).count() == 1


def assert_error_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "x" * 4097}, "text"),
        ({"text": "a", "scheduled_at": "soon"}, "scheduled_at"),
    ],
)
def test_api_bad_input_is_400_in_the_one_shape_and_writes_nothing(client, member_chat, payload, field):
    response = client.post(send_url(member_chat.pk), payload, content_type="application/json")

    error = assert_error_shape(response, 400, "invalid")
    assert field in error["details"]["fields"]
    assert not Message.objects.exists()


def test_api_malformed_json_and_bad_idempotency_key_are_400(client, member_chat):
    broken = client.post(send_url(member_chat.pk), "{not json", content_type="application/json")
    assert_error_shape(broken, 400, "parse_error")
    long_key = client.post(
        send_url(member_chat.pk),
        {"text": "Hi"},
        content_type="application/json",
        headers={"Idempotency-Key": "k" * 129},
    )
    assert_error_shape(long_key, 400, "invalid_idempotency_key")
    assert not Message.objects.exists()


def test_api_over_quota_is_429_with_retry_after(client, member_chat):
    plan = PlanFactory(code="one", name="One", messages_per_day=1)
    member_chat.organization.plan = plan
    member_chat.organization.save()
    assert client.post(send_url(member_chat.pk), {"text": "1"}, content_type="application/json").status_code == 202

    response = client.post(send_url(member_chat.pk), {"text": "2"}, content_type="application/json")

    error = assert_error_shape(response, 429, "quota_exceeded")
    assert 0 < int(response.headers["Retry-After"]) <= 24 * 60 * 60
    assert error["details"]["limit"] == 1
    assert error["details"]["resets_at"].endswith("00:00:00+00:00")


def test_api_chat_of_another_organization_is_404(client, member_chat):
    stranger_chat = ChatFactory()
    response = client.post(send_url(stranger_chat.pk), {"text": "Hi"}, content_type="application/json")

    assert_error_shape(response, 404, "not_found")
    assert not Message.objects.exists()


def test_api_retry_and_cancel_of_another_organizations_message_are_404(client, member_chat):
    stranger_chat = ChatFactory()
    message = send(stranger_chat)
    for name in ("api:message-retry", "api:message-cancel"):
        response = client.post(reverse(name, args=[message.pk]))
        assert_error_shape(response, 404, "not_found")
    message.refresh_from_db()
    assert message.status == "queued"


def test_api_cancel_then_retry(client, member_chat):
    message = send(member_chat, "later", scheduled_at=timezone.now() + timedelta(hours=1))

    cancelled = client.post(reverse("api:message-cancel", args=[message.pk]))
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "failed")
    assert cancelled.json()["error"].startswith("Cancelled")
    assert_error_shape(client.post(reverse("api:message-cancel", args=[message.pk])), 409, "invalid_state")

    retried = client.post(reverse("api:message-retry", args=[message.pk]))
    assert (retried.status_code, retried.json()["status"], retried.json()["attempts"]) == (202, "queued", 0)


@pytest.mark.django_db
def test_api_requires_authentication(client):
    chat = ChatFactory()
    response = client.post(send_url(chat.pk), {"text": "Hi"}, content_type="application/json")
    assert_error_shape(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_api_accepts_http_basic(client, member_chat):
    from tests.factories import PASSWORD

    client.logout()
    user = member_chat.organization.memberships.first().user
    import base64

    token = base64.b64encode(f"{user.username}:{PASSWORD}".encode()).decode()
    response = client.post(
        send_url(member_chat.pk),
        {"text": "Hi"},
        content_type="application/json",
        headers={"Authorization": f"Basic {token}"},
    )
    assert response.status_code == 202


# --- admin -----------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_admin_action_retries_only_the_failed_messages(superuser_client):
    chat = ChatFactory()
    failed, queued = send(chat, "failed"), send(chat, "queued")
    Message.objects.filter(pk=failed.pk).update(status="failed", attempts=3, error="boom")

    response = superuser_client.post(
        reverse("admin:messaging_message_changelist"),
        {"action": "retry_failed", admin.helpers.ACTION_CHECKBOX_NAME: [failed.pk, queued.pk]},
        follow=True,
    )

    assert response.status_code == 200
    failed.refresh_from_db()
    queued.refresh_from_db()
    assert (failed.status, failed.attempts, failed.error) == ("queued", 0, "")
    assert queued.status == "queued"
    texts = [str(message) for message in response.context["messages"]]
    assert "1 message(s) queued again." in texts
