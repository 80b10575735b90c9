"""GreenApiAdapter against FakeGreenApiServer over loopback: calls, errors, and every notification."""

import base64
import json
import socket
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from providers.base import (
    STATE_BANNED,
    STATE_CONNECTED,
    STATE_CONNECTING,
    STATE_DISCONNECTED,
    STATE_WAITING_FOR_QR_SCAN,
    ConnectionUpdate,
    InboundMessage,
    MediaPayload,
    ProviderError,
    ProviderTarget,
    StatusUpdate,
    WebhookRejectedError,
    WebhookRequest,
)
from providers.fakes.green_api import INCOMING_VARIANTS, FakeGreenApiServer
from providers.fakes.server import FakeProviderServer, FakeResponse
from providers.green_api import GreenApiAdapter, chat_id_for, media_filename, media_url_for
from providers.http import url_redact
from providers.registry import adapter_for

ROOT = Path(__file__).resolve().parents[2]
ID_INSTANCE = "1101234567"
TOKEN = "c0ffee5ecretT0ken0123456789abcdef0123456789abcd"
WEBHOOK_SECRET = "whsec-green-0123456789"
PHONE_CHAT = "5511912345678@c.us"

adapter = GreenApiAdapter()


def _fake(**options) -> FakeGreenApiServer:
    options = {"api_token": TOKEN, "status_delay_seconds": 0.03, "webhook_delay_seconds": 0.01, **options}
    return FakeGreenApiServer(id_instance=ID_INSTANCE, **options).start()


@pytest.fixture
def fake():
    server = _fake()
    yield server
    server.stop()


@pytest.fixture
def authorized_fake():
    server = _fake(state="authorized")
    yield server
    server.stop()


def _target(server, webhook_url: str = "", **changes) -> ProviderTarget:
    fields = {
        "provider": "green_api",
        "instance_name": "sales-br",
        "base_url": server.url,
        "credentials": {"id_instance": ID_INSTANCE, "api_token": TOKEN},
        "webhook_url": webhook_url,
        "webhook_secret": WEBHOOK_SECRET,
        "breaker_key": "green_api:test",
        **changes,
    }
    return ProviderTarget(**fields)


@pytest.fixture
def target(fake, webhook_sink):
    target = _target(fake, webhook_sink.url + "/webhooks/green_api/sales-br")
    adapter.provision(target)
    return target


@pytest.fixture
def connected(authorized_fake, webhook_sink):
    target = _target(authorized_fake, webhook_sink.url + "/webhooks/green_api/sales-br")
    assert adapter.provision(target).state == STATE_CONNECTED
    return target


@pytest.fixture
def ready(authorized_fake):
    """An authorized instance with no webhook URL: for calls whose notifications a test ignores."""
    return _target(authorized_fake)


def _events(target, webhooks):
    return [event for webhook in webhooks for event in adapter.parse_webhook(target, webhook).events]


def _webhook(payload, *, authorization: str = f"Bearer {WEBHOOK_SECRET}", body: bytes | None = None):
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    raw = json.dumps(payload).encode() if body is None else body
    return WebhookRequest(method="POST", url="https://app.test/webhooks/green_api/sales-br", headers=headers, body=raw)


def _assert_token_hidden(error: ProviderError, *tokens: str) -> None:
    rendered = "".join(traceback.format_exception(error))
    for token in tokens or (TOKEN,):
        for text in (error.message, str(error), error.body, rendered):
            assert token not in text


def _epoch(value: int) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def _paths(server) -> list[str]:
    return [f"{request.method} {url_redact(request.path)}" for request in server.requests]


# --- connection --------------------------------------------------------------------------------------
def test_registry_names_the_adapter():
    assert isinstance(adapter_for("green_api"), GreenApiAdapter)
    assert adapter.name == "green_api"


def test_provision_points_webhooks_at_us_and_returns_a_qr(fake):
    target = _target(fake, "https://app.test/webhooks/green_api/sales-br")
    result = adapter.provision(target)
    assert result.state == STATE_WAITING_FOR_QR_SCAN
    assert result.qr_image.startswith("data:image/png;base64,")
    assert base64.b64decode(result.qr_image.split(",", 1)[1]).startswith(b"\x89PNG")
    settings = fake.instance().settings
    assert settings["webhookUrl"] == "https://app.test/webhooks/green_api/sales-br"
    assert settings["webhookUrlToken"] == WEBHOOK_SECRET
    flags = ("incomingWebhook", "outgoingWebhook", "outgoingAPIMessageWebhook", "stateWebhook")
    assert all(settings[flag] == "yes" for flag in flags)
    assert _paths(fake) == [
        f"POST /waInstance{ID_INSTANCE}/setSettings/***",
        f"GET /waInstance{ID_INSTANCE}/getStateInstance/***",
        f"GET /waInstance{ID_INSTANCE}/qr/***",
    ]
    assert fake.requests[0].path.endswith(f"/setSettings/{TOKEN}")  # the token really is in the path


def test_provision_without_webhook_url_is_refused(fake):
    with pytest.raises(ProviderError) as error:
        adapter.provision(_target(fake, ""))
    assert error.value.permanent
    assert fake.requests == []


def test_scan_connects_and_reports_the_state_change(fake, target, webhook_sink):
    fake.scan()
    (event,) = _events(target, webhook_sink.wait_for(1))
    assert event == ConnectionUpdate(state=STATE_CONNECTED, phone="+79990001122", reason="")
    assert adapter.connection_state(target) == STATE_CONNECTED
    assert adapter.connect(target).state == STATE_CONNECTED  # qr answers alreadyLogged
    assert adapter.provision(target).state == STATE_CONNECTED


def test_pairing_code_sends_the_phone_as_an_integer(fake, target):
    result = adapter.connect(target, phone="+55 (11) 91234-5678")
    assert result.state == STATE_WAITING_FOR_QR_SCAN
    assert len(result.pairing_code) == 8
    assert fake.requests[-1].path.endswith(f"/getAuthorizationCode/{TOKEN}")
    assert fake.requests[-1].json() == {"phoneNumber": 5511912345678}


def test_pairing_code_refused_with_http_200_is_an_error(connected):
    with pytest.raises(ProviderError) as error:
        adapter.connect(connected, phone="+5511912345678")  # already authorized: status false
    assert error.value.permanent
    assert "pairing code" in error.value.message


@pytest.mark.parametrize(
    ("green_state", "expected"),
    [
        ("authorized", STATE_CONNECTED),
        ("yellowCard", STATE_CONNECTED),
        ("notAuthorized", STATE_WAITING_FOR_QR_SCAN),
        ("blocked", STATE_BANNED),
        ("starting", STATE_CONNECTING),
        ("sleepMode", STATE_DISCONNECTED),
    ],
)
def test_connection_state_maps_every_green_state(fake, green_state, expected):
    fake.instance().state = green_state
    assert adapter.connection_state(_target(fake)) == expected
    assert fake.requests[-1].method == "GET"


def test_qr_error_answered_with_http_200_is_a_temporary_error(fake):
    fake.instance().state = "starting"
    with pytest.raises(ProviderError) as error:
        adapter.connect(_target(fake))
    assert not error.value.permanent
    assert "starting" in error.value.message


# --- sending -----------------------------------------------------------------------------------------
def test_send_text_then_echo_and_sent_delivered_read(authorized_fake, connected, webhook_sink):
    result = adapter.send_text(connected, to="+55 11 91234-5678", text="Olá!", quoted_message_id="BAE5F4886F2C")
    sent = authorized_fake.instance().sent[0]
    assert result.provider_message_id == sent["idMessage"]
    assert result.recipient_id == PHONE_CHAT
    request = authorized_fake.requests[-1]
    assert (request.method, request.path) == ("POST", f"/waInstance{ID_INSTANCE}/sendMessage/{TOKEN}")
    assert request.json() == {"chatId": PHONE_CHAT, "message": "Olá!", "quotedMessageId": "BAE5F4886F2C"}

    webhooks = webhook_sink.wait_for(4)
    assert all(webhook.header("Authorization") == f"Bearer {WEBHOOK_SECRET}" for webhook in webhooks)
    echo, *statuses = _events(connected, webhooks)
    assert isinstance(echo, InboundMessage)
    assert (echo.provider_message_id, echo.from_me, echo.chat_id) == (result.provider_message_id, True, PHONE_CHAT)
    assert (echo.text, echo.sender_ids, echo.quoted_message_id) == ("Olá!", ("79990001122@c.us",), "BAE5F4886F2C")
    assert [(status.provider_message_id, status.status) for status in statuses] == [
        (result.provider_message_id, "sent"),
        (result.provider_message_id, "delivered"),
        (result.provider_message_id, "read"),
    ]
    assert all(status.timestamp.tzinfo is UTC for status in statuses)


def test_send_to_a_provider_chat_id_keeps_it(authorized_fake, ready):
    result = adapter.send_text(ready, to="120363012345678901@g.us", text="Hi team")
    assert authorized_fake.requests[-1].json()["chatId"] == "120363012345678901@g.us"
    assert result.recipient_id == "120363012345678901@g.us"


def test_sends_made_before_the_scan_go_out_after_it(fake, target, webhook_sink):
    result = adapter.send_text(target, to="+5511912345678", text="queued")
    fake.scan()
    events = _events(target, webhook_sink.wait_for(5))
    assert isinstance(events[0], ConnectionUpdate)
    assert [event.provider_message_id for event in events[1:]] == [result.provider_message_id] * 4


def test_send_media_by_url_names_the_file(authorized_fake, connected, webhook_sink):
    media = MediaPayload(kind="document", url="https://cdn.test/download?id=7", mime_type="application/pdf")
    result = adapter.send_media(
        connected, to="+5511912345678", media=MediaPayload(**{**media.__dict__, "caption": "Q3"})
    )
    request = authorized_fake.requests[-1]
    assert request.path == f"/waInstance{ID_INSTANCE}/sendFileByUrl/{TOKEN}"
    assert request.json() == {
        "chatId": PHONE_CHAT,
        "urlFile": "https://cdn.test/download?id=7",
        "fileName": "document.pdf",
        "caption": "Q3",
    }
    # The echo and the three statuses come from separate threads: find the echo, whatever came first.
    [echo] = [event for event in _events(connected, webhook_sink.wait_for(4)) if isinstance(event, InboundMessage)]
    assert (echo.provider_message_id, echo.type, echo.from_me) == (result.provider_message_id, "document", True)
    assert (echo.media_url, echo.media_filename, echo.text) == ("https://cdn.test/download?id=7", "document.pdf", "Q3")


def test_send_media_by_upload_goes_multipart_to_the_media_host(webhook_sink):
    api_host, media_host = _fake(state="authorized"), _fake(state="authorized")
    try:
        target = _target(
            api_host,
            base_url="",
            credentials={"id_instance": ID_INSTANCE, "api_token": TOKEN, "api_url": api_host.url},
        )
        target = ProviderTarget(
            **{**target.__dict__, "credentials": {**target.credentials, "media_url": media_host.url}}
        )
        media = MediaPayload(kind="image", content=b"\x89PNG fake bytes", mime_type="image/png", caption="Logo")
        result = adapter.send_media(target, to="+5511912345678", media=media)
    finally:
        api_host.stop()
        media_host.stop()
    assert api_host.requests == []
    request = media_host.requests[-1]
    assert request.path == f"/waInstance{ID_INSTANCE}/sendFileByUpload/{TOKEN}"
    assert request.header("Content-Type").startswith("multipart/form-data")
    sent = media_host.instance().sent[0]
    assert result.provider_message_id == sent["idMessage"]
    assert sent["body"]["fileName"] == "image.png"
    assert (sent["body"]["chatId"], sent["body"]["caption"], sent["body"]["mimeType"]) == (
        PHONE_CHAT,
        "Logo",
        "image/png",
    )
    assert list(media_host.uploads.values()) == [(b"\x89PNG fake bytes", "image/png")]
    assert result.raw["urlFile"].endswith("-image.png")


def test_uploaded_file_is_served_back(authorized_fake, ready):
    media = MediaPayload(kind="document", content=b"%PDF-1.4", filename="offer.pdf", mime_type="application/pdf")
    result = adapter.send_media(ready, to="+5511912345678", media=media)
    assert requests.get(result.raw["urlFile"], timeout=2).content == b"%PDF-1.4"


def test_media_without_url_or_content_is_permanent(ready):
    with pytest.raises(ProviderError) as error:
        adapter.send_media(ready, to="+5511912345678", media=MediaPayload(kind="image"))
    assert error.value.permanent


@pytest.mark.parametrize(
    ("media", "expected"),
    [
        (MediaPayload(kind="document", url="https://cdn.test/a/report.pdf", filename="Report.PDF"), "Report.PDF"),
        (MediaPayload(kind="document", url="https://cdn.test/a/report.pdf?sig=1"), "report.pdf"),
        (MediaPayload(kind="image", url="https://cdn.test/img?id=1", mime_type="image/jpeg"), "image.jpg"),
        (MediaPayload(kind="audio", url="https://cdn.test/v", mime_type="audio/ogg; codecs=opus"), "audio.ogg"),
        (MediaPayload(kind="video", url="https://cdn.test/v"), "video.mp4"),
        (MediaPayload(kind="document", content=b"x", filename="notes", mime_type="text/plain"), "notes.txt"),
    ],
)
def test_media_filename_always_has_an_extension(media, expected):
    assert media_filename(media) == expected


def test_hosts_and_chat_ids_follow_green_api_conventions():
    assert media_url_for("https://7105.api.greenapi.com") == "https://7105.media.greenapi.com"
    assert media_url_for("https://api.green-api.com") == "https://media.green-api.com"
    assert media_url_for("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert chat_id_for("+52 1 55 1234 5678") == "5215512345678@c.us"
    assert chat_id_for("5215512345678@c.us") == "5215512345678@c.us"
    assert url_redact(f"https://7105.api.greenapi.com/waInstance{ID_INSTANCE}/sendMessage/{TOKEN}") == (
        f"https://7105.api.greenapi.com/waInstance{ID_INSTANCE}/sendMessage/***"
    )


def test_mark_read_calls_read_chat(authorized_fake, ready):
    adapter.mark_read(ready, chat_id=PHONE_CHAT, provider_message_id="A1B2C3")
    assert authorized_fake.instance().reads == [{"chatId": PHONE_CHAT, "idMessage": "A1B2C3"}]
    assert authorized_fake.requests[-1].method == "POST"


def test_restart_then_logout(authorized_fake, connected, webhook_sink):
    adapter.restart(connected)
    rebooted = [event.state for event in _events(connected, webhook_sink.wait_for(2))]
    assert rebooted == [STATE_CONNECTING, STATE_CONNECTED]  # reboot: starting, then authorized again
    adapter.logout(connected)
    adapter.logout(connected)  # nothing left to log out: isLogout false is not an error
    assert _paths(authorized_fake)[-3:] == [
        f"GET /waInstance{ID_INSTANCE}/reboot/***",
        f"GET /waInstance{ID_INSTANCE}/logout/***",
        f"GET /waInstance{ID_INSTANCE}/logout/***",
    ]
    (logged_out,) = _events(connected, webhook_sink.wait_for(3)[2:])
    assert logged_out == ConnectionUpdate(state=STATE_WAITING_FOR_QR_SCAN, phone="", reason="")
    assert authorized_fake.instance().state == "notAuthorized"


def test_delete_stops_webhooks_then_logs_out(authorized_fake):
    target = _target(authorized_fake, "https://app.test/webhooks/green_api/sales-br")
    adapter.provision(target)
    assert authorized_fake.instance().settings["webhookUrl"]
    adapter.delete(target)
    assert _paths(authorized_fake)[-2:] == [
        f"POST /waInstance{ID_INSTANCE}/setSettings/***",
        f"GET /waInstance{ID_INSTANCE}/logout/***",
    ]
    settings = authorized_fake.instance().settings
    assert (settings["webhookUrl"], settings["webhookUrlToken"], settings["incomingWebhook"]) == ("", "", "no")
    assert authorized_fake.instance().state == "notAuthorized"


def test_delete_of_an_instance_that_no_longer_answers_to_its_token_is_done(fake):
    adapter.delete(_target(fake, credentials={"id_instance": ID_INSTANCE, "api_token": "revoked-token"}))
    assert fake.instance().settings["webhookUrl"] == ""


def test_health_times_a_state_call(fake):
    result = adapter.health(_target(fake))
    assert result.is_healthy
    assert result.error == ""
    assert result.latency_ms >= 0
    assert fake.requests[-1].path.endswith(f"/getStateInstance/{TOKEN}")


def test_health_of_a_stopped_server_is_unhealthy_without_the_token():
    server = _fake()
    server.stop()
    result = adapter.health(_target(server))
    assert not result.is_healthy
    assert "could not connect" in result.error
    assert TOKEN not in result.error


# --- errors ------------------------------------------------------------------------------------------
def test_recipient_without_digits_is_permanent_before_any_call(ready, authorized_fake):
    before = len(authorized_fake.requests)
    with pytest.raises(ProviderError) as error:
        adapter.send_text(ready, to="maria", text="Hi")
    assert error.value.permanent
    assert "'maria' is not a phone number" in error.value.message
    assert len(authorized_fake.requests) == before


def test_malformed_chat_id_refused_with_400_is_permanent_and_readable(ready):
    with pytest.raises(ProviderError) as error:
        adapter.send_text(ready, to="12@c.us", text="Hi")
    assert error.value.permanent
    assert (error.value.status_code, error.value.code) == (400, "bad_request")
    assert error.value.message.startswith("Green API refused sendMessage: Validation failed. Details: 'chatId'")
    _assert_token_hidden(error.value)


def test_wrong_token_is_permanent_and_never_shown(fake):
    wrong = "wr0ngT0kenValue0123456789"
    target = _target(fake, credentials={"id_instance": ID_INSTANCE, "api_token": wrong})
    with pytest.raises(ProviderError) as error:
        adapter.send_text(target, to="+5511912345678", text="Hi")
    assert error.value.permanent
    assert (error.value.status_code, error.value.code) == (401, "unauthorized")
    assert "instance id or API token" in error.value.message
    _assert_token_hidden(error.value, wrong, TOKEN)


def test_unknown_instance_is_rejected_like_a_wrong_token(fake):
    target = _target(fake, credentials={"id_instance": "1109999999", "api_token": TOKEN})
    with pytest.raises(ProviderError) as error:
        adapter.connection_state(target)
    assert (error.value.permanent, error.value.status_code) == (True, 401)


def test_missing_credentials_are_permanent(fake):
    with pytest.raises(ProviderError) as error:
        adapter.connection_state(_target(fake, credentials={"id_instance": ID_INSTANCE}))
    assert error.value.permanent
    assert fake.requests == []


def test_quota_466_is_permanent_with_the_quota_description():
    server = _fake(state="authorized", quota_sends="1")
    try:
        target = _target(server)
        adapter.send_text(target, to="+5511912345678", text="first")
        with pytest.raises(ProviderError) as error:
            adapter.send_text(target, to="+5511987654321", text="second")
    finally:
        server.stop()
    assert error.value.permanent
    assert (error.value.status_code, error.value.code) == (466, "quota_exceeded")
    assert error.value.message.startswith("Green API quota exceeded on sendMessage: Monthly quota has been exceeded")
    assert "5511912345678@c.us" in error.value.message
    assert len(server.instance().sent) == 1
    _assert_token_hidden(error.value)


def test_server_error_is_temporary_and_hides_the_token(ready, authorized_fake):
    authorized_fake.fail_next(1, 503)
    with pytest.raises(ProviderError) as error:
        adapter.send_text(ready, to="+5511912345678", text="Hi")
    assert not error.value.permanent
    assert error.value.status_code == 503
    assert "nginx" in error.value.body  # Green API's gateway page came through
    _assert_token_hidden(error.value)


def test_429_is_temporary_with_its_retry_after(ready, authorized_fake):
    authorized_fake.faults_set(rate_limited_for=1, retry_after_seconds=7)
    with pytest.raises(ProviderError) as error:
        adapter.send_text(ready, to="+5511912345678", text="Hi")
    assert (error.value.permanent, error.value.status_code, error.value.retry_after) == (False, 429, 7.0)
    assert error.value.message == "Green API rate limit hit on sendMessage (HTTP 429); retry after 7 s."
    assert adapter.send_text(ready, to="+5511912345678", text="Hi").provider_message_id


def test_hanging_provider_times_out_as_temporary(ready, authorized_fake):
    authorized_fake.faults_set(hang=True)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError) as error:
            adapter.send_text(ready, to="+5511912345678", text="Hi")
    finally:
        authorized_fake.faults_set(hang=False)
    assert time.monotonic() - started < 3
    assert not error.value.permanent
    assert "timed out" in error.value.message
    _assert_token_hidden(error.value)


def test_refused_connection_is_temporary_and_hides_the_token():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = ProviderTarget(
        provider="green_api",
        instance_name="sales-br",
        base_url=f"http://127.0.0.1:{port}",
        credentials={"id_instance": ID_INSTANCE, "api_token": TOKEN},
        breaker_key="green_api:refused",
    )
    with pytest.raises(ProviderError) as error:
        adapter.send_text(target, to="+5511912345678", text="Hi")
    assert not error.value.permanent
    assert "could not connect" in error.value.message
    _assert_token_hidden(error.value)  # the requests error text holds the URL: it must be dropped


# --- webhooks from the fake ----------------------------------------------------------------------
def test_every_incoming_variant_from_the_fake_parses(fake, target, webhook_sink):
    notifications = {item["idMessage"]: item for item in fake.inbound_all()}
    assert len(notifications) == len(INCOMING_VARIANTS)
    parsed = {}
    for webhook in webhook_sink.wait_for(len(INCOMING_VARIANTS)):
        result = adapter.parse_webhook(target, webhook)
        assert result.instance_name == "sales-br"
        parsed[json.loads(webhook.body)["idMessage"]] = result.events
    by_variant = {}
    for message_id, notification in notifications.items():
        message_data = notification["messageData"]
        variant = "groupTextMessage" if notification["senderData"]["chatId"].endswith("@g.us") else None
        by_variant[variant or message_data["typeMessage"]] = (notification, parsed[message_id])

    for skipped in ("reactionMessage", "contactMessage", "pollMessage"):
        assert by_variant[skipped][1] == []

    notification, (text,) = by_variant["textMessage"]
    assert text == InboundMessage(
        provider_message_id=notification["idMessage"],
        chat_id=PHONE_CHAT,
        sender_ids=(PHONE_CHAT,),
        timestamp=_epoch(notification["timestamp"]),
        type="text",
        text="Hello!",
        sender_name="Maria Silva",
    )
    assert by_variant["extendedTextMessage"][1][0].text == "Look: https://example.com"

    notification, (reply,) = by_variant["quotedMessage"]
    assert reply.text == "Yes, that works"
    assert reply.quoted_message_id == notification["messageData"]["quotedMessage"]["stanzaId"]

    for variant, kind in [
        ("imageMessage", "image"),
        ("videoMessage", "video"),
        ("documentMessage", "document"),
        ("audioMessage", "audio"),
        ("stickerMessage", "sticker"),
    ]:
        notification, (message,) = by_variant[variant]
        file_data = notification["messageData"]["fileMessageData"]
        assert message.type == kind
        assert (message.media_url, message.media_mime_type) == (file_data["downloadUrl"], file_data["mimeType"])
        assert (message.media_filename, message.text) == (file_data["fileName"], file_data["caption"])
    assert by_variant["documentMessage"][1][0].text == "Here is contract.pdf"

    _, (location,) = by_variant["locationMessage"]
    assert (location.type, location.latitude, location.longitude) == ("location", -23.5614, -46.6559)
    assert location.text == "Paulista Office, Av. Paulista, 1000, São Paulo"

    _, (group,) = by_variant["groupTextMessage"]
    assert (group.is_group, group.chat_id, group.sender_ids) == (True, "120363012345678901@g.us", (PHONE_CHAT,))


def test_inbound_control_route_emits_one_variant(fake, target, webhook_sink):
    response = requests.post(
        f"{fake.url}/_fake/inbound/{ID_INSTANCE}",
        json={"variant": "imageMessage", "sender": "5215512345678", "text": "foto"},
        timeout=2,
    )
    assert response.status_code == 200
    (message,) = _events(target, webhook_sink.wait_for(1))
    assert (message.type, message.text, message.chat_id) == ("image", "foto", "5215512345678@c.us")
    assert message.provider_message_id == response.json()["idMessage"]


def test_message_typed_on_the_phone_is_from_me(authorized_fake, connected, webhook_sink):
    authorized_fake.instance().settings["outgoingMessageWebhook"] = "yes"
    notification = authorized_fake.phone_send("+5511912345678", "sent from my phone")
    (message,) = _events(connected, webhook_sink.wait_for(1))
    assert json.loads(webhook_sink.received[0].body)["typeWebhook"] == "outgoingMessageReceived"
    assert (message.provider_message_id, message.from_me, message.text) == (
        notification["idMessage"],
        True,
        "sent from my phone",
    )
    assert (message.chat_id, message.sender_ids) == (PHONE_CHAT, ("79990001122@c.us",))


def test_sent_may_follow_failed_for_the_same_message(connected, webhook_sink):
    # green-api/issues#253; ordering is a later service's job, the adapter reports both as they come.
    result = adapter.send_text(connected, to="+5511912340000", text="Hi")
    echo, first, second = _events(connected, webhook_sink.wait_for(3))
    assert echo.from_me
    assert (first.provider_message_id, first.status, first.error_code) == (
        result.provider_message_id,
        "failed",
        "failed",
    )
    assert "not on WhatsApp" in first.error_message
    assert (second.provider_message_id, second.status) == (result.provider_message_id, "sent")


def test_state_changes_become_connection_updates(fake, target, webhook_sink):
    for green_state in ("blocked", "yellowCard", "starting", "sleepMode"):
        fake.state_set(green_state)
        time.sleep(0.005)  # one delivery thread after the other, so they arrive in order
    updates = _events(target, webhook_sink.wait_for(4))
    assert [update.state for update in updates] == [STATE_BANNED, STATE_CONNECTED, STATE_CONNECTING, STATE_DISCONNECTED]
    assert [update.reason.split(":")[0] for update in updates] == ["blocked", "yellowCard", "", "sleepMode"]


def test_notifications_we_do_not_track_give_no_events(fake, target, webhook_sink):
    kinds = ["incomingCall", "quotaExceeded", "deviceInfo", "incomingBlock"]
    for type_webhook in kinds:
        fake.notify(type_webhook)
    webhooks = webhook_sink.wait_for(4)
    assert sorted(json.loads(webhook.body)["typeWebhook"] for webhook in webhooks) == sorted(kinds)
    assert all(adapter.parse_webhook(target, webhook).events == [] for webhook in webhooks)


def test_duplicate_webhooks_arrive_and_parse_alike(fake, target, webhook_sink):
    fake.faults_set(duplicate_webhooks=True)
    notification = fake.inbound()
    first, second = webhook_sink.wait_for(2)
    assert first.body == second.body
    assert _events(target, [first]) == _events(target, [second])
    assert _events(target, [first])[0].provider_message_id == notification["idMessage"]


def test_reordered_webhooks_arrive_and_parse(connected, authorized_fake, webhook_sink):
    authorized_fake.faults_set(reorder_webhooks=True)
    result = adapter.send_text(connected, to="+5511912345678", text="Hi")
    events = _events(connected, webhook_sink.wait_for(4))
    kinds = ["echo" if isinstance(event, InboundMessage) else event.status for event in events]
    assert kinds == ["sent", "echo", "read", "delivered"]
    assert {event.provider_message_id for event in events} == {result.provider_message_id}


def test_notification_not_answered_200_is_delivered_again():
    our_endpoint = FakeProviderServer().start()
    our_endpoint.route("POST", r"/hook", lambda request: FakeResponse.json(200, {}))
    our_endpoint.fail_next(1, 503)
    server = _fake(redelivery_seconds="0.1")
    try:
        target = _target(server, our_endpoint.url + "/hook")
        adapter.provision(target)
        notification = server.inbound()
        deadline = time.monotonic() + 3
        while len(our_endpoint.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        server.stop()
        our_endpoint.stop()
    first, second = our_endpoint.requests[:2]
    assert first.body == second.body
    assert [webhook.status for webhook in server.webhooks[:2]] == [503, 200]
    redelivered = WebhookRequest("POST", our_endpoint.url + "/hook", second.headers, second.body)
    (message,) = adapter.parse_webhook(target, redelivered).events
    assert message.provider_message_id == notification["idMessage"]


def test_without_webhook_url_notifications_wait_for_polling(fake):
    fake.instance().settings["incomingWebhook"] = "yes"
    notification = fake.inbound(text="poll me")
    base = f"{fake.url}/waInstance{ID_INSTANCE}"
    polled = requests.get(f"{base}/receiveNotification/{TOKEN}", timeout=2).json()
    assert polled["body"] == notification
    # receiveNotification's body is the webhook JSON itself, so the same parser reads it.
    (message,) = adapter.parse_webhook(_target(fake), _webhook(polled["body"])).events
    assert message.text == "poll me"
    deleted = requests.delete(f"{base}/deleteNotification/{TOKEN}/{polled['receiptId']}", timeout=2).json()
    assert deleted == {"result": True}
    assert requests.get(f"{base}/receiveNotification/{TOKEN}", timeout=2).json() is None


# --- webhooks: authenticity and reference payloads -----------------------------------------------
REFERENCE_INCOMING = {
    "typeWebhook": "incomingMessageReceived",
    "instanceData": {"idInstance": 1101234567, "wid": "79990001122@c.us", "typeInstance": "whatsapp"},
    "timestamp": 1741616525,
    "idMessage": "A1B2C3D4E5F60718293A4B5C6D7E8F90",
    "senderData": {
        "chatId": "79001234567@c.us",
        "sender": "79001234567@c.us",
        "chatName": "Ivan",
        "senderName": "Ivan",
        "senderContactName": "Ivan P.",
    },
    "messageData": {"typeMessage": "textMessage", "textMessageData": {"textMessage": "Hello!"}},
}
REFERENCE_STATUS = {
    "typeWebhook": "outgoingMessageStatus",
    "chatId": "79001234567@c.us",
    "instanceData": {"idInstance": 1101234567, "wid": "79990001122@c.us", "typeInstance": "whatsapp"},
    "timestamp": 1741616600,
    "idMessage": "3EB0C767D097B7C7C030",
    "status": "delivered",
    "sendByApi": True,
}
REFERENCE_STATE = {
    "typeWebhook": "stateInstanceChanged",
    "instanceData": {"idInstance": 1101234567, "wid": "", "typeInstance": "whatsapp"},
    "timestamp": 1741616700,
    "stateInstance": "notAuthorized",
}


@pytest.fixture
def offline_target():
    return ProviderTarget(
        provider="green_api",
        instance_name="sales-br",
        credentials={"id_instance": ID_INSTANCE, "api_token": TOKEN},
        webhook_secret=WEBHOOK_SECRET,
    )


def test_reference_incoming_message(offline_target):
    (message,) = adapter.parse_webhook(offline_target, _webhook(REFERENCE_INCOMING)).events
    assert message == InboundMessage(
        provider_message_id="A1B2C3D4E5F60718293A4B5C6D7E8F90",
        chat_id="79001234567@c.us",
        sender_ids=("79001234567@c.us",),
        timestamp=datetime(2025, 3, 10, 14, 22, 5, tzinfo=UTC),
        text="Hello!",
        sender_name="Ivan",
    )


def test_reference_status_and_failures(offline_target):
    (status,) = adapter.parse_webhook(offline_target, _webhook(REFERENCE_STATUS)).events
    assert status == StatusUpdate("3EB0C767D097B7C7C030", "delivered", datetime(2025, 3, 10, 14, 23, 20, tzinfo=UTC))
    for raw_status in ("failed", "noAccount", "notInGroup", "yellowCard"):
        payload = {**REFERENCE_STATUS, "status": raw_status}
        (update,) = adapter.parse_webhook(offline_target, _webhook(payload)).events
        assert (update.status, update.error_code) == ("failed", raw_status)
        assert update.error_message
    described = {**REFERENCE_STATUS, "status": "noAccount", "description": "No WhatsApp account"}
    assert adapter.parse_webhook(offline_target, _webhook(described)).events[0].error_message == "No WhatsApp account"


def test_reference_state_change(offline_target):
    (update,) = adapter.parse_webhook(offline_target, _webhook(REFERENCE_STATE)).events
    assert update == ConnectionUpdate(state=STATE_WAITING_FOR_QR_SCAN, phone="", reason="")


def test_reference_reply_and_file_shapes(offline_target):
    reply = {
        **REFERENCE_INCOMING,
        "messageData": {
            "typeMessage": "quotedMessage",
            "extendedTextMessageData": {"text": "Sure", "stanzaId": "3EB0AA", "participant": "79990001122@c.us"},
            "quotedMessage": {"stanzaId": "3EB0AA", "participant": "79990001122@c.us", "typeMessage": "textMessage"},
        },
    }
    (message,) = adapter.parse_webhook(offline_target, _webhook(reply)).events
    assert (message.text, message.quoted_message_id) == ("Sure", "3EB0AA")
    image = {
        **REFERENCE_INCOMING,
        "messageData": {
            "typeMessage": "imageMessage",
            "fileMessageData": {
                "downloadUrl": "https://sw-media-out.storage.greenapi.net/1101234567/a.jpg",
                "caption": "look",
                "fileName": "a.jpg",
                "jpegThumbnail": "",
                "mimeType": "image/jpeg",
                "isForwarded": False,
                "forwardingScore": 0,
            },
        },
    }
    (photo,) = adapter.parse_webhook(offline_target, _webhook(image)).events
    assert (photo.type, photo.text, photo.media_mime_type) == ("image", "look", "image/jpeg")


def test_bare_token_is_accepted(offline_target):
    assert adapter.parse_webhook(offline_target, _webhook(REFERENCE_INCOMING, authorization=WEBHOOK_SECRET)).events


@pytest.mark.parametrize(
    ("authorization", "status"),
    [("", 401), ("Bearer ", 401), ("Bearer wrong-secret", 403), (f"Basic {WEBHOOK_SECRET}x", 403)],
)
def test_missing_or_wrong_token_is_rejected(offline_target, authorization, status):
    with pytest.raises(WebhookRejectedError) as error:
        adapter.parse_webhook(offline_target, _webhook(REFERENCE_INCOMING, authorization=authorization))
    assert error.value.status == status


def test_target_without_a_secret_rejects_everything(offline_target):
    target = ProviderTarget(**{**offline_target.__dict__, "webhook_secret": ""})
    with pytest.raises(WebhookRejectedError) as error:
        adapter.parse_webhook(target, _webhook(REFERENCE_INCOMING, authorization="Bearer anything"))
    assert error.value.status == 403


def test_notification_for_another_instance_is_rejected(offline_target):
    payload = {**REFERENCE_INCOMING, "instanceData": {**REFERENCE_INCOMING["instanceData"], "idInstance": 1109999999}}
    with pytest.raises(WebhookRejectedError) as error:
        adapter.parse_webhook(offline_target, _webhook(payload))
    assert error.value.status == 403


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        json.dumps({"typeWebhook": "incomingMessageReceived"}).encode(),  # no instanceData
        json.dumps({**REFERENCE_INCOMING, "idMessage": None, "senderData": None}).encode(),
        json.dumps({**REFERENCE_STATUS, "timestamp": "yesterday"}).encode(),
        json.dumps({**REFERENCE_INCOMING, "messageData": {"typeMessage": "textMessage"}}).encode(),
    ],
)
def test_malformed_notification_is_rejected_with_400(offline_target, body):
    with pytest.raises(WebhookRejectedError) as error:
        adapter.parse_webhook(offline_target, _webhook(None, body=body))
    assert error.value.status == 400


def test_unknown_status_and_type_are_ignored(offline_target):
    assert adapter.parse_webhook(offline_target, _webhook({**REFERENCE_STATUS, "status": "pending"})).events == []
    unknown = {**REFERENCE_STATE, "typeWebhook": "statusInstanceChanged", "statusInstance": "online"}
    assert adapter.parse_webhook(offline_target, _webhook(unknown)).events == []


# --- the fake on the command line ----------------------------------------------------------------
def test_fake_runs_from_the_command_line_with_string_options():
    command = [sys.executable, "-m", "providers.fakes", "green_api", "--port", "0"]
    command += ["--set", f"api_token={TOKEN}", "--set", "state=authorized", "--set", "quota_sends=0"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        base = f"{url}/waInstance{ID_INSTANCE}"
        assert requests.get(f"{base}/getStateInstance/{TOKEN}", timeout=2).json() == {"stateInstance": "authorized"}
        sent = requests.post(f"{base}/sendMessage/{TOKEN}", json={"chatId": PHONE_CHAT, "message": "x"}, timeout=2)
        assert sent.status_code == 466
        assert requests.get(f"{base}/getStateInstance/not-the-token", timeout=2).status_code == 401
        assert requests.post(f"{base}/getStateInstance/{TOKEN}", timeout=2).status_code == 404  # GET only
    finally:
        process.terminate()
        process.wait(timeout=5)
