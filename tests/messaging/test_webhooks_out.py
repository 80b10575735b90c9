"""Signed webhooks to integrators, against a real HTTP receiver on loopback.

Deliveries are created by the fan-out from the event log and sent by the same function the Celery
task runs; a last test runs the whole path through a real Celery worker.
"""

import json
import re
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from messaging.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from messaging.services.chats import chat_assign, chat_status_set
from messaging.services.webhooks_out import (
    webhook_deliveries_sweep,
    webhook_delivery_attempt,
    webhook_fanout,
    webhook_host_refused,
    webhook_subscription_create,
    webhook_subscription_update,
)
from tests.factories import ChatFactory, MembershipFactory
from tests.messaging.api.conftest import assert_error_shape, key_client
from tests.providers.webhook_sink import WebhookSink

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_recipe():
    """The verification snippet exactly as README.md documents it, ready to call."""
    text = README.read_text()
    block = re.search(r"<!-- webhook-verify-recipe -->\s*```python\n(.*?)```", text, flags=re.DOTALL).group(1)
    namespace: dict = {}
    exec(block, namespace)  # noqa: S102 (our own README)
    return namespace["conversa_webhook_is_authentic"]


@pytest.fixture
def sink():
    server = WebhookSink()
    yield server
    server.stop()


@pytest.fixture
def chat(db):
    return ChatFactory()


def subscribe(chat, url, events=("chat.assigned", "chat.resolved")):
    return webhook_subscription_create(organization=chat.organization, url=url, events=list(events))


def assign(chat):
    chat_assign(chat=chat, assignee=MembershipFactory(organization=chat.organization))


def the_delivery() -> WebhookDelivery:
    return WebhookDelivery.objects.get()


def due_now(delivery: WebhookDelivery) -> None:
    """Move a retry's time to now (instead of sleeping through the backoff)."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


def test_an_event_is_delivered_signed_and_the_readme_recipe_verifies_it(chat, sink):
    subscription = subscribe(chat, sink.url + "/hooks/conversa")
    assign(chat)

    assert webhook_fanout() == 1
    delivery = the_delivery()
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "succeeded"

    (request,) = sink.wait_for(1)
    headers = request.headers
    assert request.url.endswith("/hooks/conversa")
    assert headers["X-Conversa-Delivery"] == str(delivery.pk)
    assert headers["X-Conversa-Event"] == "chat.assigned"
    assert headers["X-Conversa-Signature"].startswith("sha256=")
    body = json.loads(request.body)
    assert (body["id"], body["type"], body["chat"], body["organization"]) == (
        delivery.pk,
        "chat.assigned",
        chat.pk,
        chat.organization_id,
    )
    assert body["data"]["assignee"] is not None

    verify = readme_recipe()
    assert verify(subscription.secret, headers, request.body)
    assert not verify("whsec_wrong", headers, request.body)
    assert not verify(subscription.secret, headers, request.body + b" ")
    assert not verify(subscription.secret, {**headers, "X-Conversa-Timestamp": "1000000000"}, request.body)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    (attempt,) = WebhookAttempt.objects.filter(delivery=delivery)
    assert (attempt.status_code, attempt.error) == (200, "")
    assert attempt.duration_ms >= 0


def test_only_subscribed_event_types_become_deliveries_once_each(chat, sink):
    subscribe(chat, sink.url, events=["chat.resolved"])
    assign(chat)
    chat_status_set(chat=chat, status="resolved")

    assert webhook_fanout() == 1
    assert webhook_fanout() == 0  # the cursor moved on: nothing twice
    assert the_delivery().event_type == "chat.resolved"


def test_events_before_the_subscription_are_not_delivered(chat, sink):
    assign(chat)
    subscribe(chat, sink.url)
    assert webhook_fanout() == 0


def test_each_subscription_gets_its_own_delivery(chat, sink):
    first, second = subscribe(chat, sink.url + "/a"), subscribe(chat, sink.url + "/b")
    assign(chat)
    assert webhook_fanout() == 2
    assert set(WebhookDelivery.objects.values_list("subscription", flat=True)) == {first.pk, second.pk}


def test_5xx_and_429_are_retried_with_backoff_until_success(chat, settings):
    settings.OUTBOX_RETRY_BASE_SECONDS = 2
    receiver = WebhookSink(answers=[500, (429, {"Retry-After": "120"}), 200])
    try:
        subscribe(chat, receiver.url)
        assign(chat)
        webhook_fanout()
        delivery = the_delivery()

        before = timezone.now()
        assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
        delivery.refresh_from_db()
        assert delivery.status == "pending"
        assert 1 <= (delivery.next_attempt_at - before).total_seconds() <= 3
        # Not due yet: a task arriving early sends nothing.
        assert webhook_delivery_attempt(delivery_id=delivery.pk) == "skipped"

        due_now(delivery)
        before = timezone.now()
        assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
        delivery.refresh_from_db()
        assert (delivery.next_attempt_at - before).total_seconds() >= 119  # the receiver's Retry-After

        due_now(delivery)
        assert webhook_delivery_attempt(delivery_id=delivery.pk) == "succeeded"
        requests = receiver.wait_for(3)
    finally:
        receiver.stop()
    codes = list(WebhookAttempt.objects.filter(delivery=delivery).values_list("status_code", flat=True))
    assert codes == [500, 429, 200]
    # Every attempt carries the same delivery id and body, each signed anew.
    assert {request.headers["X-Conversa-Delivery"] for request in requests} == {str(delivery.pk)}
    assert len({request.body for request in requests}) == 1


def test_a_4xx_fails_at_once(chat):
    receiver = WebhookSink(answers=[410])
    try:
        subscribe(chat, receiver.url)
        assign(chat)
        webhook_fanout()
        assert webhook_delivery_attempt(delivery_id=the_delivery().pk) == "failed"
    finally:
        receiver.stop()
    delivery = the_delivery()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 410)
    assert delivery.last_error.startswith("HTTP 410")


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def test_connection_errors_and_timeouts_are_logged_and_retried(chat, settings):
    settings.WEBHOOK_OUT_TIMEOUT_SECONDS = 0.3
    subscribe(chat, closed_port_url())
    assign(chat)
    webhook_fanout()
    delivery = the_delivery()
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
    assert "ConnectionError" in WebhookAttempt.objects.get().error

    slow = WebhookSink(answers=[("hang", 1.0)])
    try:
        WebhookSubscription.objects.filter(pk=delivery.subscription_id).update(url=slow.url)
        due_now(delivery)
        assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
    finally:
        slow.stop()
    timed_out = WebhookAttempt.objects.order_by("id").last()
    assert timed_out.status_code is None
    assert "No answer within 0.3 s" in timed_out.error


def test_a_delivery_fails_after_its_last_attempt(chat, settings):
    settings.WEBHOOK_OUT_MAX_ATTEMPTS = 2
    subscribe(chat, closed_port_url())
    assign(chat)
    webhook_fanout()
    delivery = the_delivery()
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
    due_now(delivery)
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "failed"
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 2


def test_replay_through_the_api_sends_the_same_delivery_again(chat, sink):
    subscription = subscribe(chat, sink.url)
    assign(chat)
    webhook_fanout()
    delivery = the_delivery()
    webhook_delivery_attempt(delivery_id=delivery.pk)
    client = key_client(chat.organization)

    response = client.post(reverse("api:delivery-replay", args=[delivery.pk]))

    assert response.status_code == 202
    assert (response.json()["status"], response.json()["attempts"]) == ("pending", 0)
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "succeeded"
    first, replayed = sink.wait_for(2)
    assert first.body == replayed.body
    assert replayed.headers["X-Conversa-Delivery"] == str(delivery.pk)
    assert readme_recipe()(subscription.secret, replayed.headers, replayed.body)
    detail = client.get(reverse("api:delivery-detail", args=[delivery.pk])).json()
    assert [attempt["status_code"] for attempt in detail["attempt_log"]] == [200, 200]


def test_admin_replay_action_puts_deliveries_back_in_line(chat, sink, superuser_client):
    subscribe(chat, sink.url)
    assign(chat)
    webhook_fanout()
    delivery = the_delivery()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed", attempts=10)

    response = superuser_client.post(
        reverse("admin:messaging_webhookdelivery_changelist"),
        {"action": "replay", "_selected_action": [delivery.pk]},
    )

    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    page = superuser_client.get(reverse("admin:messaging_webhookdelivery_change", args=[delivery.pk]))
    assert page.status_code == 200


@pytest.mark.parametrize("url", ["ftp://example.test/hook", "javascript:alert(1)", "file:///etc/passwd", "hook"])
def test_only_http_urls_are_accepted(chat, url):
    client = key_client(chat.organization)
    response = client.post("/api/v1/webhooks/", {"url": url, "events": ["chat.assigned"]}, format="json")
    error = assert_error_shape(response, 400, "invalid")
    assert "url" in error["details"]["fields"]
    assert not WebhookSubscription.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://example.test/"}, "events"),
        ({"url": "https://example.test/", "events": []}, "events"),
        ({"url": "https://example.test/", "events": ["message.deleted"]}, "events"),
        ({"events": ["chat.assigned"]}, "url"),
    ],
)
def test_bad_subscription_bodies_are_400(chat, body, field):
    client = key_client(chat.organization)
    error = assert_error_shape(client.post("/api/v1/webhooks/", body, format="json"), 400, "invalid")
    assert field in error["details"]["fields"]


def test_an_upper_case_scheme_is_stored_in_lower_case(chat):
    response = key_client(chat.organization).post(
        "/api/v1/webhooks/", {"url": "HTTPS://Example.test/Hook", "events": ["chat.assigned"]}, format="json"
    )
    assert response.status_code == 201
    assert WebhookSubscription.objects.get().url == "https://Example.test/Hook"


def test_a_paused_subscription_skips_what_happens_meanwhile(chat, sink):
    subscription = subscribe(chat, sink.url)
    webhook_subscription_update(subscription=subscription, is_active=False)
    assign(chat)
    assert webhook_fanout() == 0
    webhook_subscription_update(subscription=subscription, is_active=True)
    chat_status_set(chat=chat, status="resolved")
    assert webhook_fanout() == 1
    assert the_delivery().event_type == "chat.resolved"


def test_the_sweep_recovers_deliveries_lost_by_the_broker_or_a_dead_worker(chat, sink):
    subscribe(chat, sink.url)
    assign(chat)
    webhook_fanout()
    delivery = the_delivery()
    long_ago = timezone.now() - timedelta(hours=1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="sending", updated_at=long_ago)

    webhook_deliveries_sweep()
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=long_ago)
    assert webhook_deliveries_sweep() == [delivery.pk]


def test_org_admins_see_and_replay_only_their_own_deliveries(org_admin_client, org_admin, sink):
    mine = ChatFactory(organization=org_admin.organization)
    theirs = ChatFactory()
    for chat in (mine, theirs):
        subscribe(chat, sink.url)
        assign(chat)
    webhook_fanout()
    own = WebhookDelivery.objects.get(organization=org_admin.organization)
    other = WebhookDelivery.objects.exclude(pk=own.pk).get()
    WebhookDelivery.objects.update(status="failed")

    listed = org_admin_client.get(reverse("admin:messaging_webhookdelivery_changelist")).context["cl"].result_list
    assert list(listed) == [own]
    subscriptions = org_admin_client.get(reverse("admin:messaging_webhooksubscription_changelist"))
    assert [s.organization_id for s in subscriptions.context["cl"].result_list] == [org_admin.organization_id]
    org_admin_client.post(
        reverse("admin:messaging_webhookdelivery_changelist"),
        {"action": "replay", "_selected_action": [own.pk, other.pk]},
    )
    own.refresh_from_db()
    other.refresh_from_db()
    assert (own.status, other.status) == ("pending", "failed")


def test_admin_creates_a_subscription_and_shows_its_secret_once(superuser_client, chat):
    response = superuser_client.post(
        reverse("admin:messaging_webhooksubscription_add"),
        {"organization": chat.organization_id, "url": "https://example.test/in", "events": ["chat.assigned"]},
        follow=True,
    )
    assert response.status_code == 200
    subscription = WebhookSubscription.objects.get()
    shown = " ".join(str(message) for message in response.context["messages"])
    assert subscription.secret in shown
    assert subscription.cursor == chat.organization.event_sequence
    page = superuser_client.get(reverse("admin:messaging_webhooksubscription_change", args=[subscription.pk]))
    assert subscription.secret not in page.content.decode()


def test_admin_delivery_search_takes_ids_and_urls(superuser_client, chat, sink):
    subscribe(chat, sink.url + "/found-by-url")
    assign(chat)
    webhook_fanout()
    delivery = the_delivery()
    changelist = reverse("admin:messaging_webhookdelivery_changelist")
    for query in (str(delivery.pk), "found-by-url"):
        assert list(superuser_client.get(changelist, {"q": query}).context["cl"].result_list) == [delivery]
    assert superuser_client.get(changelist, {"q": "no such thing"}).status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "169.254.169.254", "[::1]"])
def test_private_addresses_can_be_refused(chat, settings, host):
    settings.WEBHOOK_OUT_ALLOW_PRIVATE_NETWORKS = False
    receiver = WebhookSink()
    try:
        port = receiver.url.rsplit(":", 1)[1]
        subscribe(chat, f"http://{host}:{port}/hook")
        assign(chat)
        webhook_fanout()
        assert webhook_delivery_attempt(delivery_id=the_delivery().pk) == "failed"
    finally:
        receiver.stop()
    assert receiver.received == []
    assert "private address" in the_delivery().last_error


def test_public_addresses_pass_the_private_network_check(settings):
    settings.WEBHOOK_OUT_ALLOW_PRIVATE_NETWORKS = False
    assert webhook_host_refused("https://93.184.216.34/hook") == ""
    assert webhook_host_refused("https://192.168.0.10/hook").startswith("Refused")
    settings.WEBHOOK_OUT_ALLOW_PRIVATE_NETWORKS = True
    assert webhook_host_refused("https://192.168.0.10/hook") == ""
