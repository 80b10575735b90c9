"""Inbound media: downloaded once into our storage, served from our URL to members only."""

import pytest
from django.core.files.base import ContentFile

from messaging.models import Event, Message
from messaging.tasks.inbound import media_download
from providers.fakes.twilio import FakeTwilioServer
from providers.registry import ProviderName
from tests.factories import MembershipFactory, MessageFactory, UserFactory, WhatsAppNumberFactory
from tests.messaging.test_webhooks import replay
from tests.providers.webhook_sink import WebhookSink

pytestmark = pytest.mark.django_db

ACCOUNT_SID = "AC" + "2" * 32


@pytest.fixture
def sink(settings):
    sink = WebhookSink()
    settings.PUBLIC_BASE_URL = sink.url
    settings.PROVIDER_CONNECT_TIMEOUT = settings.PROVIDER_READ_TIMEOUT = 1.0
    yield sink
    sink.stop()


@pytest.fixture
def number():
    return WhatsAppNumberFactory(
        provider=ProviderName.TWILIO,
        credentials={"account_sid": ACCOUNT_SID, "auth_token": "media-token", "from_number": "+15550100200"},
    )


@pytest.fixture
def twilio(sink, number):
    server = FakeTwilioServer(
        account_sid=ACCOUNT_SID,
        auth_token="media-token",
        webhook_url=f"{sink.url}/webhooks/twilio/{number.instance_name}/",
        webhook_delay_seconds=0.0,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pending_image(client, twilio, number, sink, monkeypatch):
    monkeypatch.setattr("messaging.tasks.inbound.media_download.delay", lambda message_id: None)
    fields = twilio.inbound_send("image", **{"from": "+5511912345678", "text": "receipt"})
    [request] = sink.wait_for(1)
    assert replay(client, request).status_code == 200
    message = Message.objects.get(provider_message_id=fields["MessageSid"])
    assert message.media_state == Message.MediaState.PENDING
    return message


def test_media_survives_the_provider_url_expiring(client, twilio, number, pending_image):
    media_sid = pending_image.media_source.rsplit("/", 1)[-1]
    original, _ = twilio.media[media_sid]
    media_download.apply(args=[pending_image.pk])
    pending_image.refresh_from_db()
    assert pending_image.media_state == Message.MediaState.STORED
    twilio.stop()  # the provider's URL is gone
    member = MembershipFactory(organization=number.organization)
    client.force_login(member.user)
    response = client.get(f"/messages/{pending_image.pk}/media/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == original
    assert response["Content-Type"] == pending_image.media_mime_type
    assert Event.objects.filter(type="message.media", payload__media_state="stored").exists()


def test_media_is_downloaded_once_even_if_the_task_runs_again(twilio, pending_image):
    media_download.apply(args=[pending_image.pk])
    calls = len(twilio.requests)
    media_download.apply(args=[pending_image.pk])
    assert len(twilio.requests) == calls


def test_temporary_failures_are_retried_then_stored(twilio, pending_image):
    twilio.fail_next(2, status=503)
    media_download.apply(args=[pending_image.pk])
    pending_image.refresh_from_db()
    assert pending_image.media_state == Message.MediaState.STORED


def test_failed_download_is_recorded_and_visible(settings, twilio, pending_image):
    settings.MEDIA_DOWNLOAD_MAX_ATTEMPTS = 3
    twilio.fail_next(5, status=503)
    media_download.apply(args=[pending_image.pk])
    pending_image.refresh_from_db()
    assert pending_image.media_state == Message.MediaState.FAILED
    assert "after 3 attempts" in pending_image.media_error
    assert Event.objects.filter(type="message.media", payload__media_state="failed").exists()


def test_media_gone_at_the_provider_fails_at_once(twilio, pending_image):
    twilio.media.clear()  # 404: permanent, nothing to retry
    media_download.apply(args=[pending_image.pk])
    pending_image.refresh_from_db()
    assert pending_image.media_state == Message.MediaState.FAILED
    assert pending_image.media_error


def test_media_is_served_to_members_of_its_organization_only(client, django_capture_on_commit_callbacks):
    message = MessageFactory(
        type=Message.Type.IMAGE, media_state=Message.MediaState.STORED, media_mime_type="image/png"
    )
    message.media.save("image.png", ContentFile(b"png"))
    assert client.get(f"/messages/{message.pk}/media/").status_code == 401
    client.force_login(MembershipFactory().user)  # organization B
    assert client.get(f"/messages/{message.pk}/media/").status_code == 404
    client.force_login(UserFactory())  # no organization at all
    assert client.get(f"/messages/{message.pk}/media/").status_code == 404
    client.force_login(MembershipFactory(organization=message.organization).user)
    assert client.get(f"/messages/{message.pk}/media/").status_code == 200


# --- the sweep: a download whose task was lost is enqueued again, a hopeless one failed visibly --------
def pending_media(*, age_seconds: int) -> Message:
    from datetime import timedelta

    from django.utils import timezone

    message = MessageFactory(type="image", media_state=Message.MediaState.PENDING, media_source="https://x/1.jpg")
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(seconds=age_seconds))
    return message


@pytest.mark.django_db
def test_sweep_enqueues_lost_downloads_and_fails_hopeless_ones_leaving_fresh_ones(settings):
    from messaging.monitoring import queue_depth
    from messaging.services.inbound import media_pending_sweep
    from tests.messaging.outbound_worker import broker_queue

    settings.MEDIA_STUCK_AFTER_SECONDS = 600
    fresh = pending_media(age_seconds=60)  # its task may still be retrying: left alone
    lost = pending_media(age_seconds=900)
    hopeless = pending_media(age_seconds=1300)
    stored = MessageFactory(type="image", media_state=Message.MediaState.STORED)
    with broker_queue() as queue:
        assert media_pending_sweep() == {"enqueued": 1, "failed": 1}
        assert queue_depth() == {queue: 1}  # one task, for the lost download only
    states = dict(Message.objects.values_list("pk", "media_state"))
    assert states == {fresh.pk: "pending", lost.pk: "pending", hopeless.pk: "failed", stored.pk: "stored"}
    assert "did not finish" in Message.objects.get(pk=hopeless.pk).media_error
    assert list(Event.objects.filter(type="message.media").values_list("payload__message", flat=True)) == [hopeless.pk]
