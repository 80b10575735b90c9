"""Webhooks out end to end: an API call, the fan-out task and the delivery task in a real Celery
worker, a receiver on loopback that fails once. Transactional: the worker reads committed rows."""

import json

import pytest
from django.urls import reverse

from messaging.models import WebhookAttempt, WebhookDelivery
from messaging.services.webhooks_out import webhook_subscription_create
from messaging.tasks.webhooks_out import webhook_fanout_task
from tests.factories import ChatFactory
from tests.messaging.api.conftest import key_client
from tests.messaging.outbound_worker import OutboxWorker, broker_queue, wait_until
from tests.messaging.test_webhooks_out import readme_recipe
from tests.providers.webhook_sink import WebhookSink

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_api_change_reaches_the_receiver_signed_after_a_retry(settings):
    settings.OUTBOX_RETRY_BASE_SECONDS = 0.1
    settings.OUTBOX_RETRY_MAX_SECONDS = 0.5
    receiver = WebhookSink(answers=[503])
    chat = ChatFactory()
    subscription = webhook_subscription_create(
        organization=chat.organization, url=receiver.url + "/in", events=["chat.resolved"]
    )
    try:
        with broker_queue() as queue, OutboxWorker(queue, concurrency=1):
            response = key_client(chat.organization).post(reverse("api:chat-resolve", args=[chat.pk]))
            assert response.status_code == 200
            webhook_fanout_task.delay()  # what beat sends every 2 seconds
            first, second = receiver.wait_for(2, timeout=30)
            assert wait_until(lambda: WebhookDelivery.objects.filter(status="succeeded").exists(), timeout=10)
    finally:
        receiver.stop()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.subscription_id, delivery.event_type, delivery.attempts) == (subscription.pk, "chat.resolved", 2)
    assert list(WebhookAttempt.objects.order_by("id").values_list("status_code", flat=True)) == [503, 200]
    assert first.body == second.body
    assert json.loads(second.body)["data"]["status"] == "resolved"
    assert readme_recipe()(subscription.secret, second.headers, second.body)
