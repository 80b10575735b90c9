"""Messages over the API: history paged both ways by cursor, one message, sends (text, media), limits."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from messaging.models import Message
from tests.factories import ChatFactory, MessageFactory, PlanFactory
from tests.messaging.api.conftest import assert_error_shape


def history_url(chat) -> str:
    return reverse("api:message-send", args=[chat.pk])


@pytest.fixture
def long_chat(org_a):
    """A chat of 25 messages, one a second, whose ids do not follow WhatsApp's time order."""
    chat = ChatFactory(organization=org_a.organization)
    start = timezone.now() - timedelta(hours=1)
    # Created newest first: ids run against time, so an id-ordered page would be wrong.
    for second in reversed(range(25)):
        MessageFactory(chat=chat, text=f"m{second:02d}", timestamp=start + timedelta(seconds=second))
    return chat


def texts(response) -> list[str]:
    return [message["text"] for message in response.json()["results"]]


def test_history_pages_backwards_and_forwards_by_whatsapp_time(api, long_chat):
    latest = api.get(history_url(long_chat), {"limit": 10})
    assert texts(latest) == [f"m{n:02d}" for n in range(15, 25)]
    body = latest.json()
    assert (body["has_older"], body["has_newer"]) == (True, False)

    older = api.get(history_url(long_chat), {"limit": 10, "before": body["older"]})
    assert texts(older) == [f"m{n:02d}" for n in range(5, 15)]
    oldest = api.get(history_url(long_chat), {"limit": 10, "before": older.json()["older"]})
    assert texts(oldest) == [f"m{n:02d}" for n in range(5)]
    assert (oldest.json()["has_older"], oldest.json()["older"]) == (False, None)

    forward = api.get(history_url(long_chat), {"limit": 10, "after": oldest.json()["newer"]})
    assert texts(forward) == [f"m{n:02d}" for n in range(5, 15)]
    assert forward.json()["has_newer"] is True
    end = api.get(history_url(long_chat), {"limit": 10, "after": latest.json()["newer"]})
    assert (texts(end), end.json()["has_newer"], end.json()["newer"]) == ([], False, latest.json()["newer"])


def test_history_sees_messages_with_the_same_timestamp_once(api, org_a):
    chat = ChatFactory(organization=org_a.organization)
    moment = timezone.now()
    for n in range(7):
        MessageFactory(chat=chat, text=f"same{n}", timestamp=moment)
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"before": cursor} if cursor else {})}
        body = api.get(history_url(chat), params).json()
        seen = [m["text"] for m in body["results"]] + seen
        if not body["has_older"]:
            break
        cursor = body["older"]
    assert seen == [f"same{n}" for n in range(7)]


@pytest.mark.parametrize(
    "params",
    [{"before": "not-a-cursor"}, {"after": "W10"}, {"before": "WzEsMl0"}, {"limit": 0}, {"limit": 201}, {"limit": "x"}],
)
def test_bad_history_parameters_are_400(api, long_chat, params):
    response = api.get(history_url(long_chat), params)
    assert_error_shape(response, 400)


def test_before_and_after_together_are_400(api, long_chat):
    body = api.get(history_url(long_chat), {"limit": 10}).json()
    response = api.get(history_url(long_chat), {"before": body["older"], "after": body["newer"]})
    assert_error_shape(response, 400, "invalid")


def test_get_one_message(api, chat_a):
    message = chat_a.messages.get()
    body = api.get(reverse("api:message-detail", args=[message.pk])).json()
    assert (body["id"], body["text"], body["direction"], body["media_url"]) == (
        message.pk,
        "Hello from the contact",
        "in",
        None,
    )


def test_send_with_an_api_key_is_202_and_credits_no_person(api, chat_a):
    response = api.post(history_url(chat_a), {"text": "Hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 202
    message = Message.objects.get(pk=response.json()["id"])
    assert (message.status, message.sent_by_id, message.idempotency_key) == ("queued", None, "k-1")
    again = api.post(history_url(chat_a), {"text": "Hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert (again.status_code, again.json()["id"], again.headers["Idempotent-Replayed"]) == (202, message.pk, "true")
    reused = api.post(history_url(chat_a), {"text": "Other"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert_error_shape(reused, 422, "idempotency_key_reused")


def test_send_media_with_a_caption_stores_it_and_serves_it_back(api, chat_a):
    image = SimpleUploadedFile("photo.png", b"\x89PNG fake image bytes", content_type="image/png")
    response = api.post(history_url(chat_a), {"media": image, "text": "Our menu"}, format="multipart")

    assert response.status_code == 202, response.content
    message = Message.objects.get(pk=response.json()["id"])
    assert (message.type, message.text, message.media_mime_type) == ("image", "Our menu", "image/png")
    assert message.media.read() == b"\x89PNG fake image bytes"


def test_stored_media_is_downloadable_with_the_key(api, chat_a):
    message = chat_a.messages.get()
    message.media = SimpleUploadedFile("note.pdf", b"%PDF-1.4 doc")
    message.media_state = Message.MediaState.STORED
    message.save()
    body = api.get(reverse("api:message-detail", args=[message.pk])).json()
    response = api.get(body["media_url"])
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"%PDF-1.4 doc"


@pytest.mark.parametrize(
    ("payload", "field"),
    [({}, "text"), ({"text": "  "}, "text"), ({"text": "x" * 4097}, "text"), ({"text": "a", "scheduled_at": 5}, "")],
)
def test_bad_send_bodies_are_400_and_write_nothing(api, chat_a, payload, field):
    before = Message.objects.count()
    error = assert_error_shape(api.post(history_url(chat_a), payload, format="json"), 400, "invalid")
    if field:
        assert field in error["details"]["fields"]
    assert Message.objects.count() == before


def test_malformed_json_is_400_parse_error(api, chat_a):
    response = api.post(history_url(chat_a), "{nope", content_type="application/json")
    assert_error_shape(response, 400, "parse_error")


def test_over_the_daily_quota_a_send_is_429_with_retry_after(api, org_a, chat_a):
    org_a.organization.plan = PlanFactory(code="one-a-day", name="One", messages_per_day=1)
    org_a.organization.save()
    assert api.post(history_url(chat_a), {"text": "1"}, format="json").status_code == 202
    response = api.post(history_url(chat_a), {"text": "2"}, format="json")
    error = assert_error_shape(response, 429, "quota_exceeded")
    assert 0 < int(response.headers["Retry-After"]) <= 86400
    assert error["details"]["limit"] == 1
    assert response.headers["X-RateLimit-Limit"]  # the request rate headers still come along


def test_retry_and_cancel_over_the_api(api, chat_a):
    queued = MessageFactory(chat=chat_a, direction="out", status="queued", provider_message_id=None)
    cancelled = api.post(reverse("api:message-cancel", args=[queued.pk]))
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "failed")
    assert "API key" in cancelled.json()["error"]
    assert_error_shape(api.post(reverse("api:message-cancel", args=[queued.pk])), 409, "invalid_state")
    retried = api.post(reverse("api:message-retry", args=[queued.pk]))
    assert (retried.status_code, retried.json()["status"]) == (202, "queued")
    inbound = chat_a.messages.filter(direction="in").get()
    assert_error_shape(api.post(reverse("api:message-retry", args=[inbound.pk])), 404, "not_found")
