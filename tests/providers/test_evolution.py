"""The Evolution adapter against the fake Evolution server, over loopback, webhooks included.

Webhook bodies come from the fake (sent to the webhook sink), so its shapes and the parser are
tested together; a few hand-written payloads from providers.md section 1 pin the parser to the
documented shapes.
"""

import base64
import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

import pytest
import requests

from providers.base import (
    STATE_BANNED,
    STATE_CONNECTED,
    STATE_CONNECTING,
    STATE_DISCONNECTED,
    STATE_LOGGED_OUT,
    STATE_WAITING_FOR_QR_SCAN,
    ConnectionUpdate,
    InboundMessage,
    MediaPayload,
    ProviderError,
    ProviderTarget,
    QrUpdate,
    StatusUpdate,
    WebhookRejectedError,
    WebhookRequest,
)
from providers.evolution import WEBHOOK_EVENTS, EvolutionAdapter
from providers.fakes.evolution import GROUP_JID, LID_JID, FakeEvolutionServer
from providers.registry import adapter_for

API_KEY = "test-evolution-global-key"
SECRET = "per-number-webhook-secret"
INSTANCE = "clinic-main"
OWN_PHONE = "5511987654321"
CONTACT = "5511912345678"
CONTACT_JID = f"{CONTACT}@s.whatsapp.net"


@pytest.fixture
def fake():
    server = FakeEvolutionServer(api_key=API_KEY, webhook_delay_seconds=0.01, status_delay_seconds=0.03)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def adapter() -> EvolutionAdapter:
    return EvolutionAdapter()


def _target(fake: FakeEvolutionServer, sink, name: str = INSTANCE, **changes) -> ProviderTarget:
    values = {
        "provider": "evolution",
        "instance_name": name,
        "base_url": fake.url,
        "api_key": API_KEY,
        "webhook_url": f"{sink.url}/webhooks/evolution/{name}",
        "webhook_secret": SECRET,
        "breaker_key": f"evolution-test-{uuid4().hex}",
    }
    return ProviderTarget(**{**values, **changes})


@pytest.fixture
def target(fake, webhook_sink) -> ProviderTarget:
    return _target(fake, webhook_sink)


@pytest.fixture
def parse_target() -> ProviderTarget:
    """A target for parsing hand-written webhooks: no server behind it."""
    return ProviderTarget(
        provider="evolution",
        instance_name=INSTANCE,
        base_url="http://evolution.invalid",
        api_key=API_KEY,
        webhook_url="https://app.example.test/webhooks/evolution/clinic-main",
        webhook_secret=SECRET,
    )


@pytest.fixture
def connected(adapter, fake, target, webhook_sink) -> ProviderTarget:
    """An instance provisioned and scanned; its QR and connection webhooks already arrived."""
    adapter.provision(target)
    fake.scan(INSTANCE, phone=OWN_PHONE)
    webhook_sink.wait_for(2)
    return target


def _webhooks_after(sink, seen: int, count: int) -> list[WebhookRequest]:
    return sink.wait_for(seen + count)[seen:]


def _events(adapter, target, requests_: list[WebhookRequest]) -> list:
    return [event for request in requests_ for event in adapter.parse_webhook(target, request).events]


def _webhook(body, *, secret: str = SECRET, headers: dict | None = None) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    default = {"Content-Type": "application/json", "authorization": f"Bearer {secret}"}
    return WebhookRequest(
        method="POST",
        url="https://app.example.test/webhooks/evolution/clinic-main",
        headers=headers or default,
        body=raw,
    )


def _envelope(event: str, data) -> dict:
    return {
        "event": event,
        "instance": INSTANCE,
        "data": data,
        "destination": "https://app.example.test/webhooks/evolution/clinic-main",
        "date_time": "2025-03-10T11:22:05.123Z",
        "sender": f"{OWN_PHONE}@s.whatsapp.net",
        "server_url": "https://evo.example.test",
        "apikey": None,
    }


def _last_request(fake: FakeEvolutionServer, path: str):
    return [request for request in fake.requests if request.path == path][-1]


# --- instance lifecycle --------------------------------------------------------------------------------
def test_adapter_is_registered_as_evolution():
    assert isinstance(adapter_for("evolution"), EvolutionAdapter)


def test_provision_creates_baileys_instance_with_our_webhook_and_returns_qr(adapter, fake, target, webhook_sink):
    result = adapter.provision(target)

    assert result.state == STATE_WAITING_FOR_QR_SCAN
    assert result.qr_image.startswith("data:image/png;base64,iVBOR")
    assert result.qr_code.startswith("2@")
    sent = _last_request(fake, "/instance/create")
    assert sent.header("apikey") == API_KEY
    assert sent.json() == {
        "instanceName": INSTANCE,
        "integration": "WHATSAPP-BAILEYS",
        "qrcode": True,
        "groupsIgnore": False,
        "webhook": {
            "url": target.webhook_url,
            "byEvents": False,
            "base64": True,
            "headers": {"authorization": f"Bearer {SECRET}"},
            "events": list(WEBHOOK_EVENTS),
        },
    }
    [qr_webhook] = webhook_sink.wait_for(1)
    assert qr_webhook.url == target.webhook_url
    assert qr_webhook.header("authorization") == f"Bearer {SECRET}"
    assert adapter.parse_webhook(target, qr_webhook).events == [
        QrUpdate(qr_image=result.qr_image, qr_code=result.qr_code, pairing_code="")
    ]


def test_provision_again_reconfigures_the_existing_instance_instead_of_failing(adapter, fake, target, webhook_sink):
    adapter.provision(target)
    moved = _target(fake, webhook_sink, webhook_url=f"{webhook_sink.url}/moved", webhook_secret="new-secret")

    result = adapter.provision(moved)

    assert result.state == STATE_WAITING_FOR_QR_SCAN
    assert [request.path for request in fake.requests] == [
        "/instance/create",
        "/instance/create",
        f"/webhook/set/{INSTANCE}",
        f"/instance/connect/{INSTANCE}",
    ]
    webhook = _last_request(fake, f"/webhook/set/{INSTANCE}").json()["webhook"]
    assert webhook["enabled"] is True
    assert webhook["url"] == f"{webhook_sink.url}/moved"
    assert webhook["headers"] == {"authorization": "Bearer new-secret"}
    assert len(fake.instances) == 1


def test_qr_not_ready_yet_is_connecting_then_arrives_by_webhook(adapter, fake, target, webhook_sink):
    fake.qr_delay_seconds = 0.2

    provisioned = adapter.provision(target)
    connected_early = adapter.connect(target)

    assert provisioned.state == STATE_CONNECTING
    assert provisioned.qr_image == ""
    assert connected_early.state == STATE_CONNECTING
    [qr_webhook] = webhook_sink.wait_for(1)
    [update] = adapter.parse_webhook(target, qr_webhook).events
    assert isinstance(update, QrUpdate)
    assert update.qr_image.startswith("data:image/png;base64,")
    assert adapter.connect(target).qr_code == update.qr_code


def test_connect_with_phone_returns_pairing_code(adapter, fake, target):
    adapter.provision(target)

    result = adapter.connect(target, phone="+55 (11) 98765-4321")

    assert result.state == STATE_WAITING_FOR_QR_SCAN
    assert len(result.pairing_code) == 8
    assert result.pairing_code == fake.instances[INSTANCE].pairing_code
    assert _last_request(fake, f"/instance/connect/{INSTANCE}").query == {"number": [OWN_PHONE]}


def test_connect_when_already_open_is_connected(adapter, connected):
    assert adapter.connect(connected).state == STATE_CONNECTED


def test_connect_failure_sent_with_http_200_is_raised(adapter, fake, target):
    adapter.provision(target)
    fake.connect_error = "Connection Closed"

    with pytest.raises(ProviderError) as caught:
        adapter.connect(target)

    assert caught.value.permanent is False
    assert "Connection Closed" in caught.value.message


@pytest.mark.parametrize(
    ("evolution_state", "expected"),
    [
        ("open", STATE_CONNECTED),
        ("connecting", STATE_CONNECTING),
        ("close", STATE_DISCONNECTED),
        ("refused", STATE_DISCONNECTED),
    ],
)
def test_connection_state_maps_evolution_states(adapter, fake, target, evolution_state, expected):
    adapter.provision(target)
    fake.instances[INSTANCE].state = evolution_state

    assert adapter.connection_state(target) == expected
    assert _last_request(fake, f"/instance/connectionState/{INSTANCE}").header("apikey") == API_KEY


def test_scan_sends_connection_open_with_the_account_phone(adapter, fake, target, webhook_sink):
    adapter.provision(target)
    webhook_sink.wait_for(1)

    fake.scan(INSTANCE, phone=OWN_PHONE)

    events = _events(adapter, target, _webhooks_after(webhook_sink, 1, 1))
    assert events == [ConnectionUpdate(state=STATE_CONNECTED, phone=f"+{OWN_PHONE}")]
    assert adapter.connection_state(target) == STATE_CONNECTED


def test_logout_closes_the_session_and_reports_logged_out(adapter, fake, connected, webhook_sink):
    adapter.logout(connected)

    assert fake.instances[INSTANCE].state == "close"
    assert _last_request(fake, f"/instance/logout/{INSTANCE}").method == "DELETE"
    events = _events(adapter, connected, _webhooks_after(webhook_sink, 2, 1))
    assert events == [ConnectionUpdate(state=STATE_LOGGED_OUT, reason="401 logged out from the phone")]


def test_logout_of_a_closed_instance_is_a_no_op(adapter, fake, connected):
    adapter.logout(connected)

    adapter.logout(connected)  # Evolution answers 400 "not connected": already what we want

    assert [request.path for request in fake.requests].count(f"/instance/logout/{INSTANCE}") == 2


def test_restart_reconnects_an_open_instance(adapter, fake, connected, webhook_sink):
    adapter.restart(connected)

    assert _last_request(fake, f"/instance/restart/{INSTANCE}").method == "POST"
    events = _events(adapter, connected, _webhooks_after(webhook_sink, 2, 2))
    assert ConnectionUpdate(state=STATE_CONNECTING, reason="515 restart required") in events
    assert ConnectionUpdate(state=STATE_CONNECTED, phone=f"+{OWN_PHONE}") in events


def test_restart_of_a_closed_instance_raises_the_error_sent_with_http_200(adapter, fake, connected):
    adapter.logout(connected)

    with pytest.raises(ProviderError) as caught:
        adapter.restart(connected)

    assert caught.value.permanent is True
    assert "[object Object]" in caught.value.message
    assert "session closed" in caught.value.message


def test_delete_removes_the_instance_and_is_idempotent(adapter, fake, connected):
    adapter.delete(connected)
    adapter.delete(connected)  # 404 "does not exist": already gone

    assert INSTANCE not in fake.instances
    assert [request.method for request in fake.requests if request.path == f"/instance/delete/{INSTANCE}"] == [
        "DELETE",
        "DELETE",
    ]
    with pytest.raises(ProviderError) as caught:
        adapter.connection_state(connected)
    assert caught.value.permanent is True
    assert caught.value.code == "instance_not_found"


def test_health_reads_the_welcome_message(adapter, fake, target):
    result = adapter.health(target)

    assert result.is_healthy is True
    assert result.error == ""
    assert fake.requests[-1].path == "/"


def test_health_of_a_stopped_server_reports_without_raising(adapter, webhook_sink):
    stopped = FakeEvolutionServer(api_key=API_KEY).start()
    stopped.stop()

    result = adapter.health(_target(stopped, webhook_sink))

    assert result.is_healthy is False
    assert "could not connect" in result.error


# --- sending ---------------------------------------------------------------------------------------------
def test_send_text_returns_key_id_then_echo_and_statuses_arrive(adapter, fake, connected, webhook_sink):
    result = adapter.send_text(connected, to="+55 11 91234-5678", text="Hello", quoted_message_id="3A7F00C1D2E3")

    stored = fake.instances[INSTANCE].messages[-1]
    assert result.provider_message_id == stored["key"]["id"]
    assert result.recipient_id == CONTACT_JID
    assert _last_request(fake, f"/message/sendText/{INSTANCE}").json() == {
        "number": CONTACT,
        "text": "Hello",
        "quoted": {"key": {"id": "3A7F00C1D2E3"}},
    }
    events = _events(adapter, connected, _webhooks_after(webhook_sink, 2, 4))
    echoes = [event for event in events if isinstance(event, InboundMessage)]
    assert len(echoes) == 2  # send.message and the fromMe messages.upsert
    for echo in echoes:
        assert echo.provider_message_id == result.provider_message_id
        assert echo.from_me is True
        assert echo.chat_id == CONTACT_JID
        assert echo.sender_ids == (f"{OWN_PHONE}@s.whatsapp.net",)
        assert echo.text == "Hello"
        assert echo.quoted_message_id == "3A7F00C1D2E3"
    statuses = sorted((event.status for event in events if isinstance(event, StatusUpdate)), reverse=True)
    assert statuses == ["read", "delivered"]


def test_send_text_to_a_group_or_lid_keeps_the_jid(adapter, fake, connected):
    adapter.send_text(connected, to=GROUP_JID, text="Hi all")
    adapter.send_text(connected, to=LID_JID, text="Hi")

    sent = [request.json()["number"] for request in fake.requests if request.path.startswith("/message/sendText")]
    assert sent == [GROUP_JID, LID_JID]


def test_send_media_by_url(adapter, fake, connected):
    media = MediaPayload(kind="document", url="https://files.example.test/docs/invoice-42.pdf", caption="Invoice")

    result = adapter.send_media(connected, to=CONTACT, media=media)

    assert result.provider_message_id == fake.instances[INSTANCE].messages[-1]["key"]["id"]
    assert _last_request(fake, f"/message/sendMedia/{INSTANCE}").json() == {
        "number": CONTACT,
        "mediatype": "document",
        "media": "https://files.example.test/docs/invoice-42.pdf",
        "fileName": "invoice-42.pdf",
        "mimetype": "application/pdf",
        "caption": "Invoice",
    }


@pytest.mark.parametrize("kind", ["image", "document", "video", "audio"])
def test_send_media_upload_is_raw_base64(adapter, fake, connected, kind):
    content = b"\x89PNG\r\n\x1a\n fake bytes"
    media = MediaPayload(kind=kind, content=content, mime_type="image/png" if kind == "image" else "")

    adapter.send_media(connected, to=CONTACT, media=media)

    body = _last_request(fake, f"/message/sendMedia/{INSTANCE}").json()
    assert body["mediatype"] == kind
    assert not body["media"].startswith("data:")
    assert base64.b64decode(body["media"]) == content
    if kind == "document":
        assert body["fileName"] == "document"  # Evolution refuses a base64 document without a name


def test_send_sticker_uses_the_sticker_route(adapter, fake, connected):
    result = adapter.send_media(connected, to=CONTACT, media=MediaPayload(kind="sticker", content=b"RIFFxxxxWEBP"))

    body = _last_request(fake, f"/message/sendSticker/{INSTANCE}").json()
    assert body == {"number": CONTACT, "sticker": base64.b64encode(b"RIFFxxxxWEBP").decode()}
    assert fake.instances[INSTANCE].messages[-1]["messageType"] == "stickerMessage"
    assert result.provider_message_id == fake.instances[INSTANCE].messages[-1]["key"]["id"]


def test_send_media_without_url_or_content_is_permanent(adapter, connected):
    with pytest.raises(ProviderError) as caught:
        adapter.send_media(connected, to=CONTACT, media=MediaPayload(kind="image"))

    assert caught.value.permanent is True


def test_number_not_on_whatsapp_is_permanent_and_readable(adapter, fake, connected):
    with pytest.raises(ProviderError) as caught:
        adapter.send_text(connected, to="+5511900000000", text="Hello")

    error = caught.value
    assert error.permanent is True
    assert error.status_code == 400
    assert error.code == "not_on_whatsapp"
    assert error.message == "5511900000000 is not on WhatsApp."
    assert API_KEY not in error.message
    assert fake.instances[INSTANCE].messages == []


def test_wrong_api_key_is_permanent_and_never_shows_a_key(adapter, fake, connected):
    wrong = replace(connected, api_key="not-the-key")

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(wrong, to=CONTACT, text="Hello")

    error = caught.value
    assert error.permanent is True
    assert error.status_code == 401
    assert error.code == "unauthorized"
    assert "check the server's API key" in error.message
    assert "not-the-key" not in error.message
    assert API_KEY not in error.message
    assert fake.instances[INSTANCE].messages == []


def test_unknown_instance_is_permanent(adapter, fake, webhook_sink):
    missing = _target(fake, webhook_sink, name="never-created")

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(missing, to=CONTACT, text="Hello")

    assert caught.value.permanent is True
    assert caught.value.status_code == 404
    assert 'The "never-created" instance does not exist' in caught.value.message


def test_sending_while_the_session_is_closed_is_temporary(adapter, fake, target):
    adapter.provision(target)  # not scanned: Evolution answers 400 "Error: Connection Closed"

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(target, to=CONTACT, text="Hello")

    assert caught.value.permanent is False
    assert caught.value.code == "connection_closed"
    assert caught.value.status_code == 400


def test_server_error_is_temporary_with_evolution_message(adapter, fake, connected):
    fake.fail_next(1, status=503)

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(connected, to=CONTACT, text="Hello")

    assert caught.value.permanent is False
    assert caught.value.status_code == 503
    assert "Service Unavailable" in caught.value.message
    assert fake.instances[INSTANCE].messages == []


def test_rate_limit_carries_retry_after(adapter, fake, connected):
    fake.faults_set(rate_limited_for=1, retry_after_seconds=7)

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(connected, to=CONTACT, text="Hello")

    assert caught.value.permanent is False
    assert caught.value.status_code == 429
    assert caught.value.retry_after == 7


def test_hanging_server_times_out_as_temporary(adapter, fake, connected):
    fake.faults_set(hang=True)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError) as caught:
            adapter.send_text(connected, to=CONTACT, text="Hello")
    finally:
        fake.faults_set(hang=False)

    assert time.monotonic() - started < 3
    assert caught.value.permanent is False
    assert "timed out" in caught.value.message


def test_refused_connection_is_temporary(adapter, webhook_sink):
    stopped = FakeEvolutionServer(api_key=API_KEY).start()
    stopped.stop()

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(_target(stopped, webhook_sink), to=CONTACT, text="Hello")

    assert caught.value.permanent is False
    assert "could not connect" in caught.value.message


def test_mark_read_sends_the_key_as_evolution_expects(adapter, fake, connected):
    adapter.mark_read(connected, chat_id="+5511912345678", provider_message_id="3A7F00C1D2E3F4A5B6C7")

    assert _last_request(fake, f"/chat/markMessageAsRead/{INSTANCE}").json() == {
        "readMessages": [{"remoteJid": CONTACT_JID, "fromMe": False, "id": "3A7F00C1D2E3F4A5B6C7"}]
    }
    assert fake.instances[INSTANCE].reads == [{"remoteJid": CONTACT_JID, "fromMe": False, "id": "3A7F00C1D2E3F4A5B6C7"}]


# --- webhooks from the fake ------------------------------------------------------------------------------
INBOUND_EXPECTATIONS = {
    "text": {"type": "text", "text": "Oi, tudo bem?", "chat_id": CONTACT_JID, "sender_ids": (CONTACT_JID,)},
    "extended_text": {"type": "text", "text": "Oi, tudo bem?", "chat_id": CONTACT_JID},
    "image": {"type": "image", "text": "Oi, tudo bem?", "media_mime_type": "image/png", "media_url": ""},
    "document": {"type": "document", "media_filename": "invoice.pdf", "media_mime_type": "application/pdf"},
    "audio": {"type": "audio", "media_mime_type": "audio/ogg; codecs=opus"},
    "video": {"type": "video", "text": "Oi, tudo bem?", "media_mime_type": "video/mp4"},
    "sticker": {"type": "sticker", "media_mime_type": "image/webp"},
    "location": {"type": "location", "latitude": -23.5505, "longitude": -46.6333, "text": "Clinic, Rua X, 10"},
    "lid": {"chat_id": CONTACT_JID, "sender_ids": (CONTACT_JID, LID_JID), "is_group": False},
    "group": {"chat_id": GROUP_JID, "sender_ids": (CONTACT_JID,), "is_group": True, "text": "Oi, tudo bem?"},
    "group_lid": {"chat_id": GROUP_JID, "sender_ids": (CONTACT_JID, LID_JID), "is_group": True},
}
MEDIA_MAGIC = {
    "image": b"\x89PNG",
    "document": b"%PDF",
    "audio": b"OggS",
    "video": b"\x00\x00\x00\x18ftyp",
    "sticker": b"RIFF",
}


@pytest.mark.parametrize("variant", sorted(INBOUND_EXPECTATIONS))
def test_inbound_variant_from_the_fake_parses(adapter, fake, connected, webhook_sink, variant):
    data = fake.inbound(INSTANCE, variant, sender=CONTACT, timestamp=1741616525)

    [request] = _webhooks_after(webhook_sink, 2, 1)
    result = adapter.parse_webhook(connected, request)

    assert result.instance_name == INSTANCE
    [message] = result.events
    assert isinstance(message, InboundMessage)
    assert message.provider_message_id == data["key"]["id"]
    assert message.from_me is False
    assert message.sender_name == "Maria Souza"
    assert message.timestamp == datetime(2025, 3, 10, 14, 22, 5, tzinfo=UTC)
    for field, expected in INBOUND_EXPECTATIONS[variant].items():
        assert getattr(message, field) == expected, field
    if variant in MEDIA_MAGIC:
        assert base64.b64decode(message.media_base64).startswith(MEDIA_MAGIC[variant])


@pytest.mark.parametrize("variant", ["status_broadcast", "reaction"])
def test_status_posts_and_unhandled_types_give_no_event(adapter, fake, connected, webhook_sink, variant):
    fake.inbound(INSTANCE, variant)

    [request] = _webhooks_after(webhook_sink, 2, 1)

    assert adapter.parse_webhook(connected, request).events == []


def test_failed_status_from_the_fake_parses_with_error(adapter, fake, connected, webhook_sink):
    sent = adapter.send_text(connected, to=CONTACT, text="Hello")
    fake.status_emit(INSTANCE, sent.provider_message_id, "ERROR", delay=0.3)

    events = _events(adapter, connected, _webhooks_after(webhook_sink, 2, 5))

    [failed] = [event for event in events if isinstance(event, StatusUpdate) and event.status == "failed"]
    assert failed.provider_message_id == sent.provider_message_id
    assert failed.error_code == "ERROR"
    assert "not sent" in failed.error_message


@pytest.mark.parametrize(
    ("status_reason", "expected"),
    [(401, STATE_LOGGED_OUT), (403, STATE_BANNED), (428, STATE_DISCONNECTED)],
)
def test_phone_side_disconnects_map_to_states(adapter, fake, connected, webhook_sink, status_reason, expected):
    fake.disconnect(INSTANCE, status_reason=status_reason)

    [update] = _events(adapter, connected, _webhooks_after(webhook_sink, 2, 1))

    assert update.state == expected
    assert update.reason.startswith(str(status_reason))


def test_qr_limit_gives_no_qr_then_disconnected(adapter, fake, target, webhook_sink):
    adapter.provision(target)
    webhook_sink.wait_for(1)

    fake.qr_limit_reach(INSTANCE)

    events = _events(adapter, target, _webhooks_after(webhook_sink, 1, 2))
    assert events == [ConnectionUpdate(state=STATE_DISCONNECTED, reason="QR code limit reached; ask for a new QR code")]


def test_qr_refresh_issues_a_new_qr_until_the_phone_scans(adapter, fake, target, webhook_sink):
    adapter.provision(target)
    [first] = _events(adapter, target, _webhooks_after(webhook_sink, 0, 1))

    refreshed = requests.post(f"{fake.url}/_fake/qr_refresh/{INSTANCE}", timeout=2)

    assert refreshed.status_code == 200
    [second] = _events(adapter, target, _webhooks_after(webhook_sink, 1, 1))
    assert isinstance(second, QrUpdate)
    assert second.qr_code == refreshed.json()["code"] != first.qr_code
    fake.scan(INSTANCE, phone=OWN_PHONE)
    assert requests.post(f"{fake.url}/_fake/qr_refresh/{INSTANCE}", timeout=2).status_code == 409


def test_duplicate_webhooks_arrive_twice_and_parse_the_same(adapter, fake, connected, webhook_sink):
    fake.faults_set(duplicate_webhooks=True)

    data = fake.inbound(INSTANCE, "text")

    first, second = _webhooks_after(webhook_sink, 2, 2)
    assert first.body == second.body
    assert adapter.parse_webhook(connected, first).events == adapter.parse_webhook(connected, second).events
    assert adapter.parse_webhook(connected, first).events[0].provider_message_id == data["key"]["id"]


def test_reordered_webhooks_still_parse(adapter, fake, connected, webhook_sink):
    fake.faults_set(reorder_webhooks=True)
    sent = adapter.send_text(connected, to=CONTACT, text="Hello")

    requests_ = _webhooks_after(webhook_sink, 2, 4)

    statuses = [event.status for event in _events(adapter, connected, requests_) if isinstance(event, StatusUpdate)]
    assert statuses == ["read", "delivered"]  # the fake delivered the pair newest first
    echoes = [event for event in _events(adapter, connected, requests_) if isinstance(event, InboundMessage)]
    assert {echo.provider_message_id for echo in echoes} == {sent.provider_message_id}


def test_several_instances_get_their_own_webhooks(adapter, fake, webhook_sink):
    first = _target(fake, webhook_sink, name="clinic-a")
    second = _target(fake, webhook_sink, name="clinic-b")
    adapter.provision(first)
    adapter.provision(second)
    webhook_sink.wait_for(2)

    fake.scan("clinic-b", phone="5511955550001")
    [request] = _webhooks_after(webhook_sink, 2, 1)

    assert request.url.endswith("/clinic-b")
    assert adapter.parse_webhook(second, request).events == [
        ConnectionUpdate(state=STATE_CONNECTED, phone="+5511955550001")
    ]
    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(first, request)
    assert caught.value.status == 403
    assert adapter.connection_state(first) == STATE_CONNECTING


def test_control_routes_work_over_http(adapter, fake, target, webhook_sink):
    adapter.provision(target)

    scanned = requests.post(f"{fake.url}/_fake/scan/{INSTANCE}", json={"phone": OWN_PHONE}, timeout=2)
    inbound = requests.post(
        f"{fake.url}/_fake/inbound/{INSTANCE}", json={"variant": "text", "text": "From curl"}, timeout=2
    )
    unknown = requests.post(f"{fake.url}/_fake/inbound/{INSTANCE}", json={"variant": "carrier-pigeon"}, timeout=2)

    assert scanned.status_code == 200
    assert scanned.json()["wuid"] == f"{OWN_PHONE}@s.whatsapp.net"
    assert inbound.status_code == 200
    assert unknown.status_code == 409
    events = _events(adapter, target, webhook_sink.wait_for(3))
    assert [type(event) for event in events] == [QrUpdate, ConnectionUpdate, InboundMessage]
    assert events[2].text == "From curl"


# --- webhook authenticity and malformed bodies -----------------------------------------------------------
def test_webhook_without_authorization_is_401(adapter, parse_target):
    request = _webhook(_envelope("messages.upsert", {}), headers={"Content-Type": "application/json"})

    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(parse_target, request)

    assert caught.value.status == 401


@pytest.mark.parametrize("header", ["Bearer wrong-secret", f"Basic {SECRET}", SECRET, f"Bearer {SECRET}x"])
def test_webhook_with_wrong_authorization_is_403(adapter, parse_target, header):
    request = _webhook(_envelope("messages.upsert", {}), headers={"authorization": header})

    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(parse_target, request)

    assert caught.value.status == 403


def test_webhook_is_refused_when_the_number_has_no_secret(adapter, parse_target):
    no_secret = replace(parse_target, webhook_secret="")

    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(no_secret, _webhook(_envelope("messages.upsert", {}), secret=""))

    assert caught.value.status == 403


def test_webhook_for_another_instance_is_403(adapter, parse_target):
    body = {**_envelope("connection.update", {"state": "open"}), "instance": "someone-else"}

    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(parse_target, _webhook(body))

    assert caught.value.status == 403


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        json.dumps({"instance": INSTANCE, "data": {}}).encode(),  # no event name
        json.dumps(_envelope("messages.upsert", "text")).encode(),  # data is no object
        json.dumps(_envelope("messages.upsert", {"message": {"conversation": "x"}})).encode(),  # no key
        json.dumps(
            _envelope(
                "messages.upsert",
                {
                    "key": {"remoteJid": CONTACT_JID, "id": "X1"},
                    "message": {"conversation": "x"},
                    "messageTimestamp": "soon",
                },
            )
        ).encode(),
        json.dumps(_envelope("messages.update", {"remoteJid": CONTACT_JID, "status": "READ"})).encode(),  # no id
    ],
)
def test_malformed_webhook_is_400(adapter, parse_target, body):
    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(parse_target, _webhook(body))

    assert caught.value.status == 400


@pytest.mark.parametrize("event", ["presence.update", "contacts.upsert", "CHATS_UPDATE", "logout.instance"])
def test_unknown_events_are_ignored(adapter, parse_target, event):
    result = adapter.parse_webhook(parse_target, _webhook(_envelope(event, {"id": CONTACT_JID, "presences": {}})))

    assert result.events == []
    assert result.instance_name == INSTANCE


# --- hand-written payloads from providers.md section 1 ---------------------------------------------------
REFERENCE_TEXT_UPSERT = {
    "key": {"remoteJid": "5511912345678@s.whatsapp.net", "fromMe": False, "id": "3A7F00C1D2E3F4A5B6C7"},
    "pushName": "Maria Souza",
    "status": "DELIVERY_ACK",
    "message": {"conversation": "Oi, tudo bem?", "messageContextInfo": {"deviceListMetadataVersion": 2}},
    "contextInfo": None,
    "messageType": "conversation",
    "messageTimestamp": 1741616525,
    "instanceId": "7d1c0c7e-3a7b-4a3e-9a51-0f2b6c1d2e44",
    "source": "android",
}


@pytest.mark.parametrize("event", ["messages.upsert", "MESSAGES_UPSERT"])
def test_reference_text_upsert(adapter, parse_target, event):
    result = adapter.parse_webhook(parse_target, _webhook(_envelope(event, REFERENCE_TEXT_UPSERT)))

    assert result.events == [
        InboundMessage(
            provider_message_id="3A7F00C1D2E3F4A5B6C7",
            chat_id="5511912345678@s.whatsapp.net",
            sender_ids=("5511912345678@s.whatsapp.net",),
            timestamp=datetime(2025, 3, 10, 14, 22, 5, tzinfo=UTC),
            type="text",
            text="Oi, tudo bem?",
            sender_name="Maria Souza",
        )
    ]
    assert result.response_body


def test_reference_image_upsert_with_base64(adapter, parse_target):
    data = {
        **REFERENCE_TEXT_UPSERT,
        "messageType": "imageMessage",
        "message": {
            "imageMessage": {
                "url": "https://mmg.whatsapp.net/o1/v/t62.7118-24/abc.enc",
                "mimetype": "image/jpeg",
                "caption": "receipt",
                "fileLength": "48213",
                "height": 1280,
                "width": 960,
            },
            "base64": "/9j/4AAQ",
        },
    }

    [message] = adapter.parse_webhook(parse_target, _webhook(_envelope("messages.upsert", data))).events

    assert (message.type, message.text, message.media_base64, message.media_mime_type) == (
        "image",
        "receipt",
        "/9j/4AAQ",
        "image/jpeg",
    )


def test_reference_image_without_base64_falls_back_to_url(adapter, parse_target):
    data = {
        **REFERENCE_TEXT_UPSERT,
        "message": {"imageMessage": {"url": "https://mmg.whatsapp.net/abc.enc", "mimetype": "image/jpeg"}},
    }

    [message] = adapter.parse_webhook(parse_target, _webhook(_envelope("messages.upsert", data))).events

    assert message.media_url == "https://mmg.whatsapp.net/abc.enc"
    assert message.media_base64 == ""


def test_reference_lid_with_sender_pn_and_long_timestamp(adapter, parse_target):
    data = {
        **REFERENCE_TEXT_UPSERT,
        "key": {
            "remoteJid": "189273645546123@lid",
            "senderPn": "5511912345678@s.whatsapp.net",
            "fromMe": False,
            "id": "L1",
        },
        "message": {"extendedTextMessage": {"text": "link https://x.test", "contextInfo": {"stanzaId": "Q1"}}},
        "messageTimestamp": {"low": 1741616525, "high": 0, "unsigned": True},
    }

    [message] = adapter.parse_webhook(parse_target, _webhook(_envelope("messages.upsert", data))).events

    assert message.chat_id == "5511912345678@s.whatsapp.net"
    assert message.sender_ids == ("5511912345678@s.whatsapp.net", "189273645546123@lid")
    assert message.text == "link https://x.test"
    assert message.quoted_message_id == "Q1"
    assert message.timestamp == datetime(2025, 3, 10, 14, 22, 5, tzinfo=UTC)


def test_reference_newsletter_and_broadcast_are_ignored(adapter, parse_target):
    for remote_jid in ("status@broadcast", "120363111111111111@newsletter", "1234567890@broadcast"):
        data = {**REFERENCE_TEXT_UPSERT, "key": {"remoteJid": remote_jid, "fromMe": False, "id": "N1"}}

        assert adapter.parse_webhook(parse_target, _webhook(_envelope("messages.upsert", data))).events == []


def test_reference_send_message_echo(adapter, parse_target):
    data = {
        "key": {"remoteJid": "5511912345678@s.whatsapp.net", "fromMe": True, "id": "3EB0A1B2C3D4E5F60718"},
        "pushName": "",
        "status": "PENDING",
        "message": {"conversation": "Hello"},
        "contextInfo": None,
        "messageType": "conversation",
        "messageTimestamp": 1733000000,
        "instanceId": "7d1c0c7e-3a7b-4a3e-9a51-0f2b6c1d2e44",
        "source": "unknown",
    }

    [echo] = adapter.parse_webhook(parse_target, _webhook(_envelope("send.message", data))).events

    assert echo.from_me is True
    assert echo.provider_message_id == "3EB0A1B2C3D4E5F60718"
    assert echo.chat_id == "5511912345678@s.whatsapp.net"
    assert echo.timestamp == datetime.fromtimestamp(1733000000, tz=UTC)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("PENDING", "sent"),
        ("SERVER_ACK", "sent"),
        ("DELIVERY_ACK", "delivered"),
        ("READ", "read"),
        ("PLAYED", "read"),
        ("ERROR", "failed"),
        (3, "delivered"),
    ],
)
def test_reference_messages_update(adapter, parse_target, status, expected):
    data = {
        "keyId": "3EB0A1B2C3D4E5F60718",
        "remoteJid": "5511912345678@s.whatsapp.net",
        "fromMe": True,
        "participant": None,
        "status": status,
        "instanceId": "7d1c0c7e-...",
        "messageId": "cm7x1y2z30000abcd",
    }

    [update] = adapter.parse_webhook(parse_target, _webhook(_envelope("messages.update", data))).events

    assert update.provider_message_id == "3EB0A1B2C3D4E5F60718"
    assert update.status == expected
    assert update.timestamp.tzinfo is not None
    assert (update.error_code != "") == (expected == "failed")


def test_reference_v1_messages_update_uses_id_and_milliseconds(adapter, parse_target):
    data = {"id": "3EB0V1", "remoteJid": CONTACT_JID, "fromMe": True, "status": "READ", "datetime": 1741616525123}

    [update] = adapter.parse_webhook(parse_target, _webhook(_envelope("messages.update", data))).events

    assert update == StatusUpdate(
        provider_message_id="3EB0V1", status="read", timestamp=datetime(2025, 3, 10, 14, 22, 5, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    "data",
    [
        {"keyId": "X", "remoteJid": CONTACT_JID, "fromMe": True, "status": "DELETED"},
        {"keyId": "X", "remoteJid": CONTACT_JID, "fromMe": False, "status": "READ"},
        {"keyId": "X", "remoteJid": "status@broadcast", "fromMe": True, "status": "READ"},
    ],
)
def test_reference_updates_that_are_not_our_delivery_are_skipped(adapter, parse_target, data):
    assert adapter.parse_webhook(parse_target, _webhook(_envelope("messages.update", data))).events == []


def test_reference_connection_update_open(adapter, parse_target):
    data = {
        "instance": INSTANCE,
        "wuid": "5511987654321@s.whatsapp.net",
        "profileName": "Clinic",
        "profilePictureUrl": None,
        "state": "open",
        "statusReason": 200,
    }

    events = adapter.parse_webhook(parse_target, _webhook(_envelope("connection.update", data))).events

    assert events == [ConnectionUpdate(state=STATE_CONNECTED, phone="+5511987654321")]


def test_reference_qrcode_updated(adapter, parse_target):
    data = {
        "qrcode": {
            "instance": INSTANCE,
            "pairingCode": "K7QP2WZD",
            "code": "2@AbCdEf",
            "base64": "data:image/png;base64,iVBORw0K",
        }
    }

    events = adapter.parse_webhook(parse_target, _webhook(_envelope("qrcode.updated", data))).events

    assert events == [QrUpdate(qr_image="data:image/png;base64,iVBORw0K", qr_code="2@AbCdEf", pairing_code="K7QP2WZD")]


# --- the fake's own contract -----------------------------------------------------------------------------
def test_fake_guards_in_evolution_order_and_accepts_instance_tokens(adapter, fake, target):
    adapter.provision(target)
    token = fake.instances[INSTANCE].token

    unknown = requests.get(f"{fake.url}/instance/connectionState/nope", headers={"apikey": "bad"}, timeout=2)
    no_key = requests.get(f"{fake.url}/instance/connectionState/{INSTANCE}", timeout=2)
    by_token = requests.get(f"{fake.url}/instance/connectionState/{INSTANCE}", headers={"apikey": token}, timeout=2)
    no_integration = requests.post(
        f"{fake.url}/instance/create", json={"instanceName": "x"}, headers={"apikey": API_KEY}, timeout=2
    )

    assert unknown.status_code == 404
    assert unknown.json() == {
        "status": 404,
        "error": "Not Found",
        "response": {"message": ['The "nope" instance does not exist']},
    }
    assert no_key.status_code == 401
    assert no_key.json() == {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}
    assert by_token.json() == {"instance": {"instanceName": INSTANCE, "state": "connecting"}}
    assert no_integration.status_code == 400
    assert no_integration.json()["response"]["message"] == ["Invalid integration"]
