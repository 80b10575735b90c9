"""The Twilio adapter against the fake Twilio over loopback, and its webhook parser against both the
fake's signed callbacks and payloads copied from providers.md §4."""

import base64
import dataclasses
import logging
import time
from collections import Counter
from datetime import timedelta
from urllib.parse import urlencode
from uuid import uuid4

import pytest
import requests
from django.utils import timezone

from providers.base import (
    STATE_BANNED,
    STATE_CONNECTED,
    STATE_LOGGED_OUT,
    InboundMessage,
    MediaPayload,
    ProviderError,
    ProviderTarget,
    StatusUpdate,
    WebhookRejectedError,
    WebhookRequest,
)
from providers.fakes.twilio import FakeTwilioServer
from providers.fakes.twilio import twilio_signature as fake_twilio_signature
from providers.twilio import EMPTY_TWIML, TwilioAdapter, twilio_signature

ACCOUNT_SID = "AC" + "0f" * 16
AUTH_TOKEN = "twilio-test-auth-token-7c1e"
SENDER = "+15550100200"
CONTACT = "+5511912345678"
adapter = TwilioAdapter()

# Twilio's published request-validation example (twilio-python, -php, -csharp RequestValidator tests).
VECTOR_TOKEN = "12345"
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_FIELDS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
VECTOR_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="

REFERENCE_STATUS_URL = "https://app.example.test/hooks/twilio/status"


CREDENTIALS = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": SENDER}


@pytest.fixture
def fake():
    server = FakeTwilioServer(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        sender_number=SENDER,
        status_delay_seconds=0.02,
        webhook_delay_seconds=0.01,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def target(fake) -> ProviderTarget:
    """A number on the fake, with no StatusCallback: for calls whose webhooks do not matter."""
    return ProviderTarget(
        provider="twilio",
        instance_name="twilio-1",
        base_url=fake.url,
        credentials=dict(CREDENTIALS),
        webhook_secret="unused-by-twilio",
        breaker_key=f"twilio-test-{uuid4().hex}",
    )


@pytest.fixture
def hooked_target(target, webhook_sink) -> ProviderTarget:
    """The number with its per-number webhook URL on the sink; a query string on purpose, as Twilio signs it."""
    return dataclasses.replace(target, webhook_url=f"{webhook_sink.url}/webhooks/twilio/twilio-1/?kind=status")


@pytest.fixture
def inbound_fake(fake, webhook_sink):
    """The fake with the sender's inbound URL (Twilio's console setting) on the sink."""
    fake.webhook_url = f"{webhook_sink.url}/webhooks/twilio/twilio-1/?source=console"
    return fake


@pytest.fixture
def parse_target() -> ProviderTarget:
    """A number no server stands behind: enough to parse webhooks."""
    return ProviderTarget(provider="twilio", instance_name="twilio-1", credentials=dict(CREDENTIALS))


def signed_request(url: str, fields: dict[str, str] | list[tuple[str, str]], token: str = AUTH_TOKEN) -> WebhookRequest:
    """A webhook as Twilio would post it, signed by the fake's own implementation of the algorithm."""
    pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
    return WebhookRequest(
        method="POST",
        url=url,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": fake_twilio_signature(token, url, pairs),
        },
        body=urlencode(pairs).encode(),
    )


def parsed_events(target: ProviderTarget, webhooks: list[WebhookRequest]) -> list:
    events = []
    for webhook in webhooks:
        events.extend(adapter.parse_webhook(target, webhook).events)
    return events


def basic_auth_of(request) -> str:
    return base64.b64decode(request.header("Authorization").removeprefix("Basic ")).decode()


def assert_recent_utc(moment) -> None:
    assert moment.tzinfo is not None
    assert moment.utcoffset() == timedelta(0)
    assert abs(timezone.now() - moment) < timedelta(seconds=5)


# --- sending ---------------------------------------------------------------------------------------
def test_send_text_posts_a_signed_in_form_and_returns_the_sid(fake, hooked_target):
    result = adapter.send_text(hooked_target, to=CONTACT, text="Olá, Maria")

    assert result.provider_message_id in fake.messages
    assert result.provider_message_id.startswith("SM")
    assert result.recipient_id == CONTACT
    assert result.raw["status"] == "queued"
    assert result.raw["num_media"] == "0"  # Twilio's counts are strings
    (call,) = fake.requests
    assert (call.method, call.path) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    assert call.header("Content-Type") == "application/x-www-form-urlencoded"
    assert basic_auth_of(call) == f"{ACCOUNT_SID}:{AUTH_TOKEN}"
    assert call.form() == {
        "To": [f"whatsapp:{CONTACT}"],
        "From": [f"whatsapp:{SENDER}"],
        "Body": ["Olá, Maria"],
        "StatusCallback": [hooked_target.webhook_url],
    }


@pytest.mark.parametrize("to", ["whatsapp:+5511912345678", "5511912345678", "+55 11 91234-5678"])
def test_send_text_accepts_every_spelling_of_the_recipient(fake, target, to):
    adapter.send_text(target, to=to, text="Oi")

    assert fake.requests[-1].form()["To"] == [f"whatsapp:{CONTACT}"]


def test_send_media_by_url_sends_media_url_and_caption_as_body(fake, target):
    media = MediaPayload(kind="image", url="https://cdn.example.test/menu.jpg", caption="Our menu")

    result = adapter.send_media(target, to=CONTACT, media=media)

    assert result.provider_message_id.startswith("MM")
    assert fake.messages[result.provider_message_id]["num_media"] == "1"
    form = fake.requests[-1].form()
    assert form["MediaUrl"] == ["https://cdn.example.test/menu.jpg"]
    assert form["Body"] == ["Our menu"]


def test_send_media_without_caption_sends_no_body(fake, target):
    adapter.send_media(target, to=CONTACT, media=MediaPayload(kind="document", url="https://cdn.example.test/a.pdf"))

    assert "Body" not in fake.requests[-1].form()


def test_send_media_as_uploaded_bytes_is_refused_permanently_without_calling_twilio(fake, target):
    media = MediaPayload(kind="image", content=b"\x89PNG...", filename="a.png", mime_type="image/png")

    with pytest.raises(ProviderError) as caught:
        adapter.send_media(target, to=CONTACT, media=media)

    assert caught.value.permanent is True
    assert "public URL" in caught.value.message
    assert fake.requests == []


def test_invalid_number_is_a_permanent_error_with_twilios_code(fake, target):
    with pytest.raises(ProviderError) as caught:
        adapter.send_text(target, to="+5511912340000", text="Oi")

    error = caught.value
    assert error.permanent is True
    assert (error.status_code, error.code) == (400, "21211")
    assert "Invalid 'To' Phone Number" in error.message
    assert "not a valid phone number" in error.message
    assert AUTH_TOKEN not in str(error)
    assert fake.messages == {}


def test_wrong_auth_token_is_a_permanent_error_without_the_token_in_it(fake, target):
    wrong_token = "wrong-token-9f8e7d"
    wrong = dataclasses.replace(target, credentials={**target.credentials, "auth_token": wrong_token})

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(wrong, to=CONTACT, text="Oi")

    error = caught.value
    assert error.permanent is True
    assert (error.status_code, error.code) == (401, "20003")
    assert "account SID or auth token" in error.message
    assert wrong_token not in str(error)
    assert AUTH_TOKEN not in str(error)
    assert basic_auth_of(fake.requests[-1]) == f"{ACCOUNT_SID}:{wrong_token}"


def test_recipient_that_is_not_a_phone_number_fails_permanently_before_any_call(fake, target):
    with pytest.raises(ProviderError) as caught:
        adapter.send_text(target, to="maria@example.test", text="Oi")

    assert caught.value.permanent is True
    assert fake.requests == []


def test_missing_credentials_fail_permanently_before_any_call(fake, target):
    incomplete = dataclasses.replace(target, credentials={"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN})

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(incomplete, to=CONTACT, text="Oi")

    assert caught.value.permanent is True
    assert "from_number" in caught.value.message
    assert fake.requests == []


def test_server_error_is_temporary_with_twilios_code(fake, target):
    fake.fail_next(1, 500)

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(target, to=CONTACT, text="Oi")

    error = caught.value
    assert error.permanent is False
    assert (error.status_code, error.code) == (500, "20500")
    assert "Internal Server Error" in error.message


def test_rate_limit_is_temporary_and_carries_retry_after(fake, target):
    fake.faults_set(rate_limited_for=1, retry_after_seconds=7)

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(target, to=CONTACT, text="Oi")

    error = caught.value
    assert error.permanent is False
    assert (error.status_code, error.code) == (429, "20429")
    assert error.retry_after == 7.0
    # The next call goes through: the fault was one call long.
    assert adapter.send_text(target, to=CONTACT, text="Oi").provider_message_id


def test_hanging_twilio_times_out_as_a_temporary_error(fake, target):
    fake.faults_set(hang=True)
    started = time.monotonic()

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(target, to=CONTACT, text="Oi")

    assert caught.value.permanent is False
    assert "timed out" in caught.value.message
    assert time.monotonic() - started < 3


def test_refused_connection_is_a_temporary_error(parse_target):
    stopped = FakeTwilioServer(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN).start()
    stopped.stop()

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(dataclasses.replace(parse_target, base_url=stopped.url), to=CONTACT, text="Oi")

    assert caught.value.permanent is False
    assert "could not connect" in caught.value.message


# --- the account: connection, health and the documented no-ops --------------------------------------
def test_provision_and_connect_check_the_account_and_report_connected(fake, target):
    assert adapter.provision(target).state == STATE_CONNECTED
    result = adapter.connect(target, phone=CONTACT)

    assert (result.state, result.qr_image, result.pairing_code) == (STATE_CONNECTED, "", "")
    assert [(call.method, call.path) for call in fake.requests] == [
        ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}.json"),
        ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}.json"),
    ]
    assert basic_auth_of(fake.requests[0]) == f"{ACCOUNT_SID}:{AUTH_TOKEN}"


@pytest.mark.parametrize(
    ("account_status", "state"),
    [("active", STATE_CONNECTED), ("suspended", STATE_BANNED), ("closed", STATE_LOGGED_OUT)],
)
def test_connection_state_follows_the_account_status(fake, target, account_status, state):
    requests.post(f"{fake.url}/_fake/account", json={"status": account_status}, timeout=2)

    assert adapter.connection_state(target) == state


def test_connection_state_with_wrong_credentials_is_a_permanent_error(fake, target):
    wrong = dataclasses.replace(target, credentials={**target.credentials, "auth_token": "nope"})

    with pytest.raises(ProviderError) as caught:
        adapter.connection_state(wrong)

    assert (caught.value.permanent, caught.value.code) == (True, "20003")


def test_health_times_the_account_fetch(fake, target):
    fake.faults_set(latency_ms=60)

    health = adapter.health(target)

    assert health.is_healthy is True
    assert health.latency_ms >= 60
    assert health.error == ""
    assert fake.requests[-1].path == f"/2010-04-01/Accounts/{ACCOUNT_SID}.json"


def test_health_reports_a_failing_twilio_without_raising(fake, target):
    fake.fail_next(1, 503)

    health = adapter.health(target)

    assert health.is_healthy is False
    assert "503" in health.error


def test_health_reports_a_suspended_account_as_unhealthy(fake, target):
    fake.account_status = "suspended"

    health = adapter.health(target)

    assert (health.is_healthy, health.error) == (False, f"Twilio account is {STATE_BANNED}")


def test_mark_read_logout_restart_and_delete_are_logged_no_ops(fake, target, caplog):
    caplog.set_level(logging.DEBUG, logger="providers.twilio")

    adapter.mark_read(target, chat_id=CONTACT, provider_message_id="SM123")
    adapter.logout(target)
    adapter.restart(target)
    adapter.delete(target)

    assert fake.requests == []
    logged = [record.getMessage() for record in caplog.records if record.name == "providers.twilio"]
    assert len(logged) == 4
    assert all("no-op" in line for line in logged)


# --- status callbacks from the fake -----------------------------------------------------------------
def test_status_callbacks_after_a_send_parse_to_sent_delivered_read(fake, hooked_target, webhook_sink):
    sid = adapter.send_text(hooked_target, to=CONTACT, text="Oi").provider_message_id

    webhooks = webhook_sink.wait_for(3)

    assert {webhook.url for webhook in webhooks} == {hooked_target.webhook_url}
    assert all(webhook.header("Content-Type") == "application/x-www-form-urlencoded" for webhook in webhooks)
    results = [adapter.parse_webhook(hooked_target, webhook) for webhook in webhooks]
    assert all(result.response_body == EMPTY_TWIML for result in results)
    assert all(result.response_content_type == "text/xml" for result in results)
    assert all(result.instance_name == "twilio-1" for result in results)
    events = [event for result in results for event in result.events]
    assert [(event.provider_message_id, event.status) for event in events] == [
        (sid, "sent"),
        (sid, "delivered"),
        (sid, "read"),
    ]
    assert all(isinstance(event, StatusUpdate) and event.error_code == "" for event in events)
    assert_recent_utc(events[0].timestamp)
    fetched = requests.get(
        f"{fake.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=2
    )
    assert fetched.json()["status"] == "read"


def test_send_outside_the_24_hour_window_is_accepted_then_fails_with_63016(fake, hooked_target, webhook_sink):
    sid = adapter.send_text(hooked_target, to="+5511912343016", text="Oi").provider_message_id

    (event,) = parsed_events(hooked_target, webhook_sink.wait_for(1))

    assert (event.provider_message_id, event.status, event.error_code) == (sid, "failed", "63016")
    assert "24-hour" in event.error_message
    assert fake.messages[sid]["error_code"] == 63016


def test_undelivered_callback_is_reported_as_failed_with_its_code(fake, hooked_target, webhook_sink):
    sid = adapter.send_text(hooked_target, to="+5511912343003", text="Oi").provider_message_id

    (event,) = parsed_events(hooked_target, webhook_sink.wait_for(1))

    assert (event.provider_message_id, event.status, event.error_code) == (sid, "failed", "63003")
    assert "not on WhatsApp" in event.error_message


def test_out_of_order_callbacks_are_reported_as_they_arrive(fake, target, hooked_target, webhook_sink):
    sid = adapter.send_text(target, to=CONTACT, text="Oi").provider_message_id
    assert "StatusCallback" not in fake.requests[-1].form()

    requests.post(
        f"{fake.url}/_fake/status",
        json={"sid": sid, "statuses": ["read", "delivered"], "callback_url": hooked_target.webhook_url},
        timeout=2,
    )
    events = parsed_events(hooked_target, webhook_sink.wait_for(2))

    assert [(event.provider_message_id, event.status) for event in events] == [(sid, "read"), (sid, "delivered")]


def test_duplicated_callbacks_all_arrive_and_parse(fake, hooked_target, webhook_sink):
    fake.faults_set(duplicate_webhooks=True)
    sid = adapter.send_text(hooked_target, to=CONTACT, text="Oi").provider_message_id

    webhooks = webhook_sink.wait_for(6)
    events = parsed_events(hooked_target, webhooks)

    assert Counter(event.status for event in events) == {"sent": 2, "delivered": 2, "read": 2}
    assert {event.provider_message_id for event in events} == {sid}
    # A redelivery is the same request: same idempotency token.
    assert len({webhook.header("I-Twilio-Idempotency-Token") for webhook in webhooks}) == 3


# --- inbound messages from the fake -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "expected_type", "expected_mime_type"),
    [
        ("image", "image", "image/jpeg"),
        ("audio", "audio", "audio/ogg"),
        ("video", "video", "video/mp4"),
        ("document", "document", "application/pdf"),
    ],
)
def test_inbound_media_from_the_fake_parses_with_its_url(
    inbound_fake, parse_target, webhook_sink, kind, expected_type, expected_mime_type
):
    sent = inbound_fake.inbound_send(kind, text="see this")

    (webhook,) = webhook_sink.wait_for(1)
    (message,) = adapter.parse_webhook(parse_target, webhook).events

    assert webhook.url == inbound_fake.webhook_url
    assert isinstance(message, InboundMessage)
    assert message.provider_message_id == sent["MessageSid"]
    assert (message.type, message.text, message.media_mime_type) == (expected_type, "see this", expected_mime_type)
    assert message.media_url == sent["MediaUrl0"]
    media = requests.get(message.media_url, timeout=2)
    assert (media.status_code, media.headers["Content-Type"]) == (200, expected_mime_type)


def test_inbound_text_from_the_fake_parses_to_a_message(inbound_fake, parse_target, webhook_sink):
    sent = inbound_fake.inbound_send("text", text="Oi, quero um orçamento", profile_name="Maria Silva")

    (message,) = parsed_events(parse_target, webhook_sink.wait_for(1))

    assert message == InboundMessage(
        provider_message_id=sent["MessageSid"],
        chat_id=CONTACT,
        sender_ids=(CONTACT,),
        timestamp=message.timestamp,
        type="text",
        text="Oi, quero um orçamento",
        sender_name="Maria Silva",
    )
    assert_recent_utc(message.timestamp)
    assert message.raw["To"] == f"whatsapp:{SENDER}"


def test_inbound_location_from_the_fake_parses_coordinates_and_place(inbound_fake, parse_target, webhook_sink):
    inbound_fake.inbound_send("location", latitude=-22.9519, longitude=-43.2105, label="Cristo Redentor", address="Rio")

    (message,) = parsed_events(parse_target, webhook_sink.wait_for(1))

    assert (message.type, message.latitude, message.longitude) == ("location", -22.9519, -43.2105)
    assert message.text == "Cristo Redentor\nRio"


def test_inbound_button_reply_from_the_fake_parses_as_text_quoting_our_message(
    inbound_fake, parse_target, webhook_sink
):
    inbound_fake.inbound_send("button", button_text="Confirmar", button_payload="confirm-42", replied_to="SMours")

    (message,) = parsed_events(parse_target, webhook_sink.wait_for(1))

    assert (message.type, message.text, message.quoted_message_id) == ("text", "Confirmar", "SMours")
    assert message.raw["ButtonPayload"] == "confirm-42"


def test_inbound_over_the_control_route_is_posted_and_signed(inbound_fake, parse_target, webhook_sink):
    answer = requests.post(
        f"{inbound_fake.url}/_fake/inbound", json={"kind": "text", "from": "+5521998765432", "text": "Oi"}, timeout=2
    )

    (webhook,) = webhook_sink.wait_for(1)
    (message,) = adapter.parse_webhook(parse_target, webhook).events

    assert answer.status_code == 202
    assert message.provider_message_id == answer.json()["MessageSid"]
    assert (message.chat_id, message.sender_ids, message.text) == ("+5521998765432", ("+5521998765432",), "Oi")
    assert inbound_fake.requests == []  # control routes are not provider calls


def test_reordered_inbound_webhooks_arrive_newest_first_and_parse(inbound_fake, parse_target, webhook_sink):
    inbound_fake.faults_set(reorder_webhooks=True)
    inbound_fake.inbound_send("text", text="first")
    inbound_fake.inbound_send("text", text="second")

    events = parsed_events(parse_target, webhook_sink.wait_for(2))

    assert [event.text for event in events] == ["second", "first"]


# --- signatures -------------------------------------------------------------------------------------
def test_signature_matches_twilios_published_vector():
    form = {key: [value] for key, value in VECTOR_FIELDS.items()}

    assert twilio_signature(VECTOR_TOKEN, VECTOR_URL, form) == VECTOR_SIGNATURE
    assert fake_twilio_signature(VECTOR_TOKEN, VECTOR_URL, list(VECTOR_FIELDS.items())) == VECTOR_SIGNATURE


@pytest.mark.parametrize("url", [VECTOR_URL, "https://mycompany.com:443/myapp.php?foo=1&bar=2"])
def test_published_vector_is_accepted_with_and_without_the_default_port(parse_target, url):
    vector_target = dataclasses.replace(
        parse_target, credentials={**parse_target.credentials, "auth_token": VECTOR_TOKEN}
    )
    request = WebhookRequest(
        method="POST",
        url=url,
        headers={"X-Twilio-Signature": VECTOR_SIGNATURE},
        body=urlencode(VECTOR_FIELDS).encode(),
    )

    result = adapter.parse_webhook(vector_target, request)

    # A voice call's fields are not a messaging event: accepted, and ignored.
    assert result.events == []
    assert result.response_body == EMPTY_TWIML


def test_published_vector_with_a_tampered_field_is_rejected(parse_target):
    vector_target = dataclasses.replace(
        parse_target, credentials={**parse_target.credentials, "auth_token": VECTOR_TOKEN}
    )
    body = urlencode({**VECTOR_FIELDS, "Digits": "9999"}).encode()
    request = WebhookRequest("POST", VECTOR_URL, {"X-Twilio-Signature": VECTOR_SIGNATURE}, body)

    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(vector_target, request)

    assert caught.value.status == 403


def test_missing_signature_is_rejected_with_401(parse_target):
    request = signed_request(REFERENCE_STATUS_URL, {"MessageSid": "SM1", "MessageStatus": "sent"})
    unsigned = dataclasses.replace(request, headers={"Content-Type": "application/x-www-form-urlencoded"})

    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(parse_target, unsigned)

    assert caught.value.status == 401


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda request: signed_request(request.url, {"MessageSid": "SM1"}, token="other"), id="other-token"
        ),
        pytest.param(lambda request: dataclasses.replace(request, body=request.body + b"&Extra=1"), id="tampered-body"),
        pytest.param(
            lambda request: dataclasses.replace(request, url=request.url.split("?")[0]), id="url-without-query"
        ),
        pytest.param(lambda request: dataclasses.replace(request, url=request.url + "&x=1"), id="longer-url"),
    ],
)
def test_signature_that_does_not_match_is_rejected_with_403(inbound_fake, parse_target, webhook_sink, forge):
    inbound_fake.inbound_send("text")
    (genuine,) = webhook_sink.wait_for(1)
    assert adapter.parse_webhook(parse_target, genuine).events  # the genuine one passes

    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(parse_target, forge(genuine))

    assert caught.value.status == 403


def test_a_number_without_an_auth_token_accepts_no_webhook(parse_target):
    request = signed_request(REFERENCE_STATUS_URL, {"MessageSid": "SM1", "MessageStatus": "sent"})
    tokenless = dataclasses.replace(parse_target, credentials={"account_sid": ACCOUNT_SID})

    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(tokenless, request)

    assert caught.value.status == 403


@pytest.mark.parametrize("body", [b'{"MessageSid": "SM1", "MessageStatus": "sent"}', b"MessageSid=%FF%FE"])
def test_body_that_is_not_a_utf8_form_is_rejected_with_400(parse_target, body):
    request = WebhookRequest("POST", REFERENCE_STATUS_URL, {"X-Twilio-Signature": "c2lnbmF0dXJl"}, body)

    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(parse_target, request)

    assert caught.value.status == 400


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"MessageStatus": "delivered", "AccountSid": ACCOUNT_SID}, id="status-without-sid"),
        pytest.param(
            {"MessageSid": "SM1", "SmsStatus": "received", "From": f"whatsapp:{CONTACT}", "Latitude": "north"},
            id="location-not-a-number",
        ),
        pytest.param({"MessageSid": "SM1", "SmsStatus": "received", "Body": "Oi"}, id="inbound-without-from"),
    ],
)
def test_signed_webhook_missing_what_its_kind_needs_is_rejected_with_400(parse_target, fields):
    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(parse_target, signed_request(REFERENCE_STATUS_URL, fields))

    assert caught.value.status == 400


# --- payloads copied from providers.md §4 -------------------------------------------------------------
REFERENCE_INBOUND = {
    "MessageSid": "SM3f9a0c1b2d3e4f5a6b7c8d9e0f1a2b3c",
    "SmsSid": "SM3f9a0c1b2d3e4f5a6b7c8d9e0f1a2b3c",
    "SmsMessageSid": "SM3f9a0c1b2d3e4f5a6b7c8d9e0f1a2b3c",
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "MessagingServiceSid": "MG0123456789abcdef0123456789abcdef",
    "From": "whatsapp:+5511912345678",
    "To": "whatsapp:+15550100200",
    "Body": "Segue a foto",
    "NumMedia": "1",
    "NumSegments": "1",
    "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC0123/Messages/MM0123/Media/ME0123",
    "MediaContentType0": "image/jpeg",
    "ProfileName": "Maria",
    "WaId": "5511912345678",
    "SmsStatus": "received",
    "ApiVersion": "2010-04-01",
}


def test_reference_inbound_with_media_parses_without_a_message_type(parse_target):
    result = adapter.parse_webhook(parse_target, signed_request(REFERENCE_STATUS_URL, REFERENCE_INBOUND))

    (message,) = result.events
    assert message.provider_message_id == "SM3f9a0c1b2d3e4f5a6b7c8d9e0f1a2b3c"
    assert (message.chat_id, message.sender_ids, message.sender_name) == (CONTACT, (CONTACT,), "Maria")
    assert (message.type, message.text) == ("image", "Segue a foto")
    assert message.media_url == REFERENCE_INBOUND["MediaUrl0"]
    assert message.media_mime_type == "image/jpeg"
    assert (message.from_me, message.is_group) == (False, False)
    assert_recent_utc(message.timestamp)
    assert result.response_body == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


def test_reference_inbound_with_two_media_keeps_the_second_in_raw(parse_target):
    fields = {
        **REFERENCE_INBOUND,
        "NumMedia": "2",
        "MediaUrl1": "https://api.twilio.com/2010-04-01/Accounts/AC0123/Messages/MM0123/Media/ME0456",
        "MediaContentType1": "application/pdf",
        "SomeFieldTwilioAddsTomorrow": "x",
    }

    (message,) = adapter.parse_webhook(parse_target, signed_request(REFERENCE_STATUS_URL, fields)).events

    assert message.media_url == fields["MediaUrl0"]
    assert message.raw["media"] == [
        {"url": fields["MediaUrl0"], "content_type": "image/jpeg"},
        {"url": fields["MediaUrl1"], "content_type": "application/pdf"},
    ]
    assert message.raw["SomeFieldTwilioAddsTomorrow"] == "x"


def test_reference_inbound_whose_wa_id_differs_keeps_both_ids(parse_target):
    # Brazil's ninth digit: the address Twilio replies to first, the WhatsApp id after.
    fields = {**REFERENCE_INBOUND, "From": "whatsapp:+551112345678", "NumMedia": "0"}

    (message,) = adapter.parse_webhook(parse_target, signed_request(REFERENCE_STATUS_URL, fields)).events

    assert message.chat_id == "+551112345678"
    assert message.sender_ids == ("+551112345678", "+5511912345678")


@pytest.mark.parametrize("status", ["failed", "undelivered"])
def test_reference_status_callback_outside_the_window_is_failed_63016(parse_target, status):
    fields = {
        "MessageSid": "SM3f9a0c1b2d3e4f5a6b7c8d9e0f1a2b3c",
        "MessageStatus": status,
        "SmsSid": "SM3f9a0c1b2d3e4f5a6b7c8d9e0f1a2b3c",
        "SmsStatus": status,
        "AccountSid": "AC0123456789abcdef0123456789abcdef",
        "From": "whatsapp:+15550100200",
        "To": "whatsapp:+5511912345678",
        "ApiVersion": "2010-04-01",
        "ErrorCode": "63016",
        "ChannelPrefix": "whatsapp",
    }

    (event,) = adapter.parse_webhook(parse_target, signed_request(REFERENCE_STATUS_URL, fields)).events

    assert (event.provider_message_id, event.status, event.error_code) == (fields["MessageSid"], "failed", "63016")
    assert "template" in event.error_message
    assert "https://www.twilio.com/docs/errors/63016" in event.error_message
    assert_recent_utc(event.timestamp)


@pytest.mark.parametrize("status", ["queued", "accepted", "sending", "scheduled"])
def test_status_callbacks_before_whatsapp_has_the_message_carry_no_event(parse_target, status):
    fields = {"MessageSid": "SM1", "MessageStatus": status, "SmsStatus": status, "To": f"whatsapp:{CONTACT}"}

    result = adapter.parse_webhook(parse_target, signed_request(REFERENCE_STATUS_URL, fields))

    assert result.events == []
    assert result.response_body == EMPTY_TWIML


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"EventType": "onMessageAdded", "ConversationSid": "CH1"}, id="conversations-event"),
        pytest.param({"CallSid": "CA1", "CallStatus": "ringing"}, id="voice-call"),
        pytest.param(
            {"MessageSid": "SM1", "SmsStatus": "received", "From": f"whatsapp:{CONTACT}", "MessageType": "reaction"},
            id="reaction-with-nothing-to-show",
        ),
    ],
)
def test_unknown_events_are_accepted_and_ignored(parse_target, fields):
    result = adapter.parse_webhook(parse_target, signed_request(REFERENCE_STATUS_URL, fields))

    assert result.events == []
    assert result.response_content_type == "text/xml"


def test_reference_url_signed_without_its_default_port_is_accepted_with_it(parse_target):
    fields = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    request = signed_request(REFERENCE_STATUS_URL, fields)
    with_port = dataclasses.replace(request, url="https://app.example.test:443/hooks/twilio/status")

    (event,) = adapter.parse_webhook(parse_target, with_port).events

    assert event.status == "delivered"


# --- the fake's command-line options --------------------------------------------------------------
def test_fake_takes_its_options_as_strings_like_the_command_line():
    server = FakeTwilioServer(
        port="0",
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        webhook_url="http://127.0.0.1:9/hook",
        account_status="closed",
        status_delay_seconds="0.5",
        webhook_delay_seconds="0.25",
    ).start()
    try:
        assert (server.status_delay_seconds, server.webhook_delay_seconds) == (0.5, 0.25)
        account = requests.get(
            f"{server.url}/2010-04-01/Accounts/{ACCOUNT_SID}.json", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=2
        )
        assert account.json()["status"] == "closed"
    finally:
        server.stop()
