"""The Meta Cloud API adapter against its fake Graph API over loopback, webhooks included."""

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from uuid import uuid4

import pytest
import requests

from providers.base import (
    STATE_CONNECTED,
    ConnectResult,
    InboundMessage,
    MediaPayload,
    ProviderError,
    ProviderTarget,
    StatusUpdate,
    WebhookRejectedError,
    WebhookRequest,
)
from providers.fakes.meta_cloud import DEFAULT_SENDER, FakeMetaCloudServer
from providers.meta_cloud import MetaCloudAdapter, media_id_of, webhook_phone_number_ids
from providers.registry import adapter_for
from tests.providers.webhook_sink import WebhookSink

PHONE_NUMBER_ID = "109876543210987"  # the id in providers.md's examples, so they parse as ours
APP_SECRET = "test-app-secret-9f8e7d"
ACCESS_TOKEN = "EAAG-test-access-token-123456"
VERIFY_TOKEN = "test-verify-token"
INBOUND_TIME = 1741616525


@pytest.fixture(scope="module")
def sink():
    # One sink for the module (each stop costs a shutdown poll); each test's fake calls its own path.
    server = WebhookSink()
    yield server
    server.stop()


@pytest.fixture
def fake(sink):
    server = FakeMetaCloudServer(
        webhook_url=f"{sink.url}/webhooks/meta_cloud/{uuid4().hex}",
        app_secret=APP_SECRET,
        access_token=ACCESS_TOKEN,
        phone_number_id=PHONE_NUMBER_ID,
        verify_token=VERIFY_TOKEN,
        status_delay_seconds=0.02,
        webhook_delay_seconds=0.01,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def webhooks(sink, fake):
    """Return a function waiting for the first `count` webhooks this test's fake delivered."""

    def wait_for(count: int, timeout: float = 5.0) -> list[WebhookRequest]:
        deadline = time.monotonic() + timeout
        while True:
            mine = [request for request in list(sink.received) if request.url.startswith(fake.webhook_url)]
            if len(mine) >= count:
                return mine[:count]
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} webhooks, got {len(mine)}")
            time.sleep(0.005)

    return wait_for


def _target(base_url: str, **credentials) -> ProviderTarget:
    return ProviderTarget(
        provider="meta_cloud",
        instance_name="meta-number-1",
        base_url=base_url,
        credentials={
            "phone_number_id": PHONE_NUMBER_ID,
            "access_token": ACCESS_TOKEN,
            "app_secret": APP_SECRET,
            **credentials,
        },
        webhook_secret=VERIFY_TOKEN,
        breaker_key=f"meta-cloud-test-{uuid4().hex}",
    )


@pytest.fixture
def target(fake) -> ProviderTarget:
    return _target(f"{fake.url}/v21.0")


@pytest.fixture
def paper_target() -> ProviderTarget:
    """A target for parsing webhooks by hand: no server behind it."""
    return _target("https://graph.example.test/v21.0")


@pytest.fixture
def adapter() -> MetaCloudAdapter:
    return MetaCloudAdapter()


def _signed(body: bytes, secret: str = APP_SECRET) -> WebhookRequest:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest(
        method="POST",
        url="https://conversa.example.test/webhooks/meta_cloud/",
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
        body=body,
    )


def _events(adapter, target, requests_received: list[WebhookRequest]) -> list:
    return [event for request in requests_received for event in adapter.parse_webhook(target, request).events]


def _assert_no_secret(error: ProviderError) -> None:
    for secret in (ACCESS_TOKEN, APP_SECRET):
        assert secret not in str(error)
        assert secret not in error.body


# --- number: provision, connect, state, health, no-op lifecycle -------------------------------------------------
def test_registry_names_the_meta_cloud_adapter():
    assert isinstance(adapter_for("meta_cloud"), MetaCloudAdapter)


def test_provision_reads_the_phone_number_and_reports_connected(adapter, target, fake):
    result = adapter.provision(target)

    assert result == ConnectResult(state=STATE_CONNECTED)
    request = fake.requests[-1]
    assert (request.method, request.path) == ("GET", f"/v21.0/{PHONE_NUMBER_ID}")
    assert request.query["fields"] == ["display_phone_number,verified_name,quality_rating"]
    assert request.header("Authorization") == f"Bearer {ACCESS_TOKEN}"


def test_connect_and_connection_state_report_connected(adapter, target, fake):
    assert adapter.connect(target, phone="+5511912345678").state == STATE_CONNECTED
    assert adapter.connection_state(target) == STATE_CONNECTED
    assert adapter.phone_number_get(target) == {
        "display_phone_number": "15550100200",
        "verified_name": "Conversa Test",
        "quality_rating": "GREEN",
        "id": PHONE_NUMBER_ID,
    }
    assert len(fake.requests) == 3


def test_wrong_token_is_a_permanent_error_without_the_token(adapter, fake):
    target = _target(f"{fake.url}/v21.0", access_token="EAAG-expired-token-000")

    with pytest.raises(ProviderError) as caught:
        adapter.connection_state(target)

    error = caught.value
    assert error.permanent is True
    assert (error.status_code, error.code) == (401, "190")
    assert "Invalid OAuth access token" in error.message
    assert "EAAG-expired-token-000" not in str(error)
    assert fake.requests[-1].header("Authorization") == "Bearer EAAG-expired-token-000"


def test_unknown_phone_number_id_is_permanent(adapter, fake):
    target = _target(f"{fake.url}/v21.0", phone_number_id="999999999999999")

    with pytest.raises(ProviderError) as caught:
        adapter.provision(target)

    assert caught.value.permanent is True
    assert caught.value.code == "100"
    assert "does not exist" in caught.value.message


def test_missing_credential_is_permanent_before_any_call(adapter, fake):
    target = _target(f"{fake.url}/v21.0", access_token="")

    with pytest.raises(ProviderError, match="no access_token configured") as caught:
        adapter.send_text(target, to="+5511912345678", text="Oi")

    assert caught.value.permanent is True
    assert fake.requests == []


def test_logout_restart_delete_make_no_provider_calls(adapter, target, fake):
    assert adapter.logout(target) is None
    assert adapter.restart(target) is None
    assert adapter.delete(target) is None
    assert fake.requests == []


def test_health_of_a_live_number(adapter, target, fake):
    fake.faults_set(latency_ms=30)

    result = adapter.health(target)

    assert result.is_healthy is True
    assert result.error == ""
    assert 30 <= result.latency_ms < 1000


def test_health_of_a_stopped_server_reports_the_failure(adapter):
    stopped = FakeMetaCloudServer().start()
    stopped.stop()

    result = adapter.health(_target(f"{stopped.url}/v21.0"))

    assert result.is_healthy is False
    assert "could not connect" in result.error


# --- sending ---------------------------------------------------------------------------------------------------
def test_send_text_returns_the_wamid_and_wa_id(adapter, target, fake):
    result = adapter.send_text(target, to="+55 11 91234-5678", text="Your appointment is confirmed")

    sent = fake.sent[-1]
    assert result.provider_message_id == sent["id"]
    assert result.provider_message_id.startswith("wamid.")
    assert result.recipient_id == "5511912345678"
    request = fake.requests[-1]
    assert (request.method, request.path) == ("POST", f"/v21.0/{PHONE_NUMBER_ID}/messages")
    assert request.header("Authorization") == f"Bearer {ACCESS_TOKEN}"
    assert request.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "5511912345678",
        "type": "text",
        "text": {"body": "Your appointment is confirmed", "preview_url": False},
    }


def test_send_text_quoting_a_message_sends_its_context(adapter, target, fake):
    adapter.send_text(target, to="5511912345678", text="Sim", quoted_message_id="wamid.QUOTED=")

    assert fake.sent[-1]["payload"]["context"] == {"message_id": "wamid.QUOTED="}


def test_brazil_eight_digit_mobile_comes_back_with_the_ninth_digit(adapter, target, fake):
    result = adapter.send_text(target, to="+551187654321", text="Oi")

    assert fake.sent[-1]["payload"]["to"] == "551187654321"
    assert result.recipient_id == "5511987654321"
    assert result.raw["contacts"] == [{"input": "551187654321", "wa_id": "5511987654321"}]


def test_send_to_a_username_user_goes_by_bsuid(adapter, target, fake):
    result = adapter.send_text(target, to="BR.4455667788990011223", text="Oi")

    payload = fake.sent[-1]["payload"]
    assert payload["recipient"] == "BR.4455667788990011223"
    assert "to" not in payload
    assert result.recipient_id == "BR.4455667788990011223"


def test_send_image_by_link_with_caption(adapter, target, fake):
    media = MediaPayload(kind="image", url="https://cdn.example.test/x.jpg", caption="Seu pedido")

    result = adapter.send_media(target, to="+5511912345678", media=media)

    payload = fake.sent[-1]["payload"]
    assert result.provider_message_id == fake.sent[-1]["id"]
    assert payload["type"] == "image"
    assert payload["image"] == {"link": "https://cdn.example.test/x.jpg", "caption": "Seu pedido"}


def test_send_audio_drops_the_caption_meta_would_reject(adapter, target, fake):
    media = MediaPayload(kind="audio", url="https://cdn.example.test/a.ogg", caption="ignored")

    adapter.send_media(target, to="+5511912345678", media=media)

    assert fake.sent[-1]["payload"]["audio"] == {"link": "https://cdn.example.test/a.ogg"}


def test_send_document_by_upload_then_by_media_id(adapter, target, fake):
    content = b"%PDF-1.4 " + bytes(range(256))
    media = MediaPayload(kind="document", content=content, filename="boleto.pdf", caption="Boleto")

    result = adapter.send_media(target, to="+5511912345678", media=media)

    upload, send = fake.requests[-2:]
    assert upload.path == f"/v21.0/{PHONE_NUMBER_ID}/media"
    assert upload.header("Content-Type").startswith("multipart/form-data")
    assert upload.header("Authorization") == f"Bearer {ACCESS_TOKEN}"
    media_id = send.json()["document"]["id"]
    assert fake.media[media_id] == {"content": content, "mime_type": "application/pdf", "filename": "boleto.pdf"}
    assert send.json()["document"] == {"id": media_id, "caption": "Boleto", "filename": "boleto.pdf"}
    assert result.provider_message_id == fake.sent[-1]["id"]


def test_send_media_without_url_or_content_is_permanent(adapter, target, fake):
    with pytest.raises(ProviderError) as caught:
        adapter.send_media(target, to="+5511912345678", media=MediaPayload(kind="image"))

    assert caught.value.permanent is True
    assert fake.requests == []


def test_mark_read_sends_status_read_for_the_message(adapter, target, fake):
    message_id = fake.inbound_send("text")[0]

    adapter.mark_read(target, chat_id=DEFAULT_SENDER, provider_message_id=message_id)

    assert fake.reads == [message_id]
    assert fake.requests[-1].json() == {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}


def test_mark_read_of_an_unknown_message_is_permanent(adapter, target, fake):
    with pytest.raises(ProviderError) as caught:
        adapter.mark_read(target, chat_id=DEFAULT_SENDER, provider_message_id="wamid.UNKNOWN=")

    assert caught.value.permanent is True
    assert caught.value.code == "100"
    assert fake.reads == []


def test_media_download_takes_two_steps_with_the_bearer_token(adapter, target, fake, webhooks):
    fake.inbound_send("image")
    [event] = _events(adapter, target, webhooks(1))
    media_id = media_id_of(event)

    content, mime_type = adapter.media_download(target, media_id)

    assert content == fake.media[media_id]["content"]
    assert mime_type == "image/jpeg"
    lookup, download = fake.requests[-2:]
    assert lookup.path == f"/v21.0/{media_id}"
    assert download.path == "/whatsapp_business/attachments/"
    assert download.query["mid"] == [media_id]
    assert download.header("Authorization") == f"Bearer {ACCESS_TOKEN}"


def test_media_url_refuses_a_download_without_the_token(fake):
    fake.inbound_send("image")
    [media_id] = fake.media
    lookup = requests.get(
        f"{fake.url}/v21.0/{media_id}", headers={"Authorization": f"Bearer {ACCESS_TOKEN}"}, timeout=2
    )

    response = requests.get(lookup.json()["url"], timeout=2)

    assert lookup.status_code == 200
    assert response.status_code == 401
    assert response.json()["error"]["code"] == 104


# --- errors ----------------------------------------------------------------------------------------------------
def test_recipient_not_in_allowed_list_is_permanent(adapter, target, fake):
    fake.allowed_recipients = {"5511900000001"}

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(target, to="+5511912345678", text="Oi")

    error = caught.value
    assert error.permanent is True
    assert (error.status_code, error.code) == (400, "131030")
    assert "not in allowed list" in error.message
    _assert_no_secret(error)
    assert fake.sent == []


def test_malformed_recipient_is_permanent(adapter, target, fake):
    with pytest.raises(ProviderError) as caught:
        adapter.send_text(target, to="123", text="Oi")

    assert caught.value.permanent is True
    assert caught.value.code == "100"
    assert "Invalid WhatsApp recipient phone number" in caught.value.message


def test_recipient_without_digits_is_refused_before_calling_meta(adapter, target, fake):
    with pytest.raises(ProviderError) as caught:
        adapter.send_text(target, to="maria", text="Oi")

    assert caught.value.permanent is True
    assert fake.requests == []


def test_throughput_limit_sent_as_http_400_is_temporary(adapter, target, fake):
    fake.throughput_limit_next(1)

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(target, to="+5511912345678", text="Oi")

    error = caught.value
    assert error.permanent is False
    assert (error.status_code, error.code) == (400, "130429")
    assert error.retry_after is None
    _assert_no_secret(error)
    # The limit was for that call only: the retry goes through.
    assert adapter.send_text(target, to="+5511912345678", text="Oi").provider_message_id == fake.sent[-1]["id"]


def test_http_429_carries_retry_after(adapter, target, fake):
    fake.faults_set(rate_limited_for=1, retry_after_seconds=7)

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(target, to="+5511912345678", text="Oi")

    error = caught.value
    assert error.permanent is False
    assert (error.status_code, error.code) == (429, "130429")
    assert error.retry_after == 7.0


def test_server_error_is_temporary(adapter, target, fake):
    fake.fail_next(1, status=503)

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(target, to="+5511912345678", text="Oi")

    error = caught.value
    assert error.permanent is False
    assert (error.status_code, error.code) == (503, "2")
    assert "Service temporarily unavailable" in error.message
    _assert_no_secret(error)


def test_error_body_with_http_200_is_detected(adapter, target, fake):
    fake.body_error_next(131000)

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(target, to="+5511912345678", text="Oi")

    assert caught.value.permanent is False
    assert (caught.value.status_code, caught.value.code) == (200, "131000")
    assert fake.sent == []


def test_unknown_code_marked_transient_is_temporary(adapter, target, fake):
    fake.body_error_next(987654)  # the fake marks it is_transient, as Graph does for passing failures

    with pytest.raises(ProviderError) as caught:
        adapter.connection_state(target)

    assert caught.value.permanent is False
    assert caught.value.code == "987654"


def test_hanging_server_times_out_as_temporary(adapter, target, fake):
    fake.faults_set(hang=True)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError) as caught:
            adapter.send_text(target, to="+5511912345678", text="Oi")
    finally:
        fake.faults_set(hang=False)

    assert caught.value.permanent is False
    assert "timed out" in caught.value.message
    assert time.monotonic() - started < 2.5


def test_refused_connection_is_temporary(adapter):
    stopped = FakeMetaCloudServer().start()
    stopped.stop()

    with pytest.raises(ProviderError) as caught:
        adapter.send_text(_target(f"{stopped.url}/v21.0"), to="+5511912345678", text="Oi")

    assert caught.value.permanent is False
    assert "could not connect" in caught.value.message


# --- webhooks from the fake ------------------------------------------------------------------------------------
def test_send_is_followed_by_signed_sent_delivered_read_statuses(adapter, target, fake, webhooks):
    result = adapter.send_text(target, to="+5511912345678", text="Oi")

    received = webhooks(3)
    assert all(request.header("X-Hub-Signature-256").startswith("sha256=") for request in received)
    updates = _events(adapter, target, received)
    assert {update.status for update in updates} == {"sent", "delivered", "read"}
    assert all(isinstance(update, StatusUpdate) for update in updates)
    assert {update.provider_message_id for update in updates} == {result.provider_message_id}
    by_status = {update.status: update.timestamp for update in updates}
    assert by_status["sent"] < by_status["delivered"] < by_status["read"]
    assert by_status["read"].tzinfo == UTC


def test_re_engagement_failure_arrives_after_an_accepted_send(adapter, target, fake, webhooks):
    result = adapter.send_text(target, to="+5511912341047", text="Oi")

    [update] = _events(adapter, target, webhooks(1))

    assert result.provider_message_id.startswith("wamid.")
    assert update.provider_message_id == result.provider_message_id
    assert update.status == "failed"
    assert update.error_code == "131047"
    assert update.error_message.startswith("Re-engagement message: More than 24 hours")


INBOUND_EXPECTATIONS = {
    "text": {"type": "text", "text": "Oi"},
    "image": {"type": "image", "text": "Foto do pedido", "media_mime_type": "image/jpeg"},
    "video": {"type": "video", "text": "Vídeo", "media_mime_type": "video/mp4"},
    "audio": {"type": "audio", "text": "", "media_mime_type": "audio/ogg; codecs=opus"},
    "document": {
        "type": "document",
        "text": "Boleto",
        "media_mime_type": "application/pdf",
        "media_filename": "boleto.pdf",
    },
    "sticker": {"type": "sticker", "media_mime_type": "image/webp"},
    "location": {
        "type": "location",
        "text": "MASP\nAv. Paulista, 1578 - Bela Vista, São Paulo",
        "latitude": -23.5613496,
        "longitude": -46.6565712,
    },
}


@pytest.mark.parametrize("variant", sorted(INBOUND_EXPECTATIONS))
def test_inbound_variant_is_parsed(adapter, target, fake, webhooks, variant):
    [message_id] = fake.inbound_send(variant, timestamp=INBOUND_TIME)

    result = adapter.parse_webhook(target, webhooks(1)[0])

    [message] = result.events
    assert isinstance(message, InboundMessage)
    assert result.instance_name == PHONE_NUMBER_ID
    assert message.provider_message_id == message_id
    assert message.chat_id == DEFAULT_SENDER
    assert message.sender_ids[0] == DEFAULT_SENDER
    assert message.sender_ids[1].startswith("BR.")
    assert message.sender_name == "Maria"
    assert message.timestamp == datetime(2025, 3, 10, 14, 22, 5, tzinfo=UTC)
    assert message.from_me is False
    assert message.media_url == ""
    for name, value in INBOUND_EXPECTATIONS[variant].items():
        assert getattr(message, name) == value, name
    if variant in ("image", "video", "audio", "document", "sticker"):
        assert media_id_of(message) in fake.media


def test_inbound_reply_carries_the_quoted_message(adapter, target, fake, webhooks):
    fake.inbound_send("reply", text="Pode ser às 10h?", context_id="wamid.OURS=")

    [message] = _events(adapter, target, webhooks(1))

    assert message.text == "Pode ser às 10h?"
    assert message.quoted_message_id == "wamid.OURS="


def test_inbound_from_a_username_user_without_wa_id_uses_the_bsuid(adapter, target, fake, webhooks):
    fake.inbound_send("bsuid")

    [message] = _events(adapter, target, webhooks(1))

    assert b"wa_id" not in webhooks(1)[0].body
    assert message.chat_id == "BR.4455667788990011223"
    assert message.sender_ids == ("BR.4455667788990011223",)
    assert message.sender_name == "Maria"


def test_two_messages_in_one_change_are_both_parsed(adapter, target, fake, webhooks):
    message_ids = fake.inbound_send("two_messages", text="Oi")

    messages = _events(adapter, target, webhooks(1))

    assert [message.provider_message_id for message in messages] == message_ids
    assert [message.text for message in messages] == ["Oi", "Oi (2)"]


def test_two_entries_in_one_webhook_are_both_parsed(adapter, target, fake, webhooks):
    message_ids = fake.inbound_send("two_entries")

    messages = _events(adapter, target, webhooks(1))

    assert len(json.loads(webhooks(1)[0].body)["entry"]) == 2
    assert [message.provider_message_id for message in messages] == message_ids


@pytest.mark.parametrize("variant", ["reaction", "unsupported"])
def test_reactions_and_unsupported_messages_are_skipped(adapter, target, fake, webhooks, variant):
    fake.inbound_send(variant)

    result = adapter.parse_webhook(target, webhooks(1)[0])

    assert result.events == []
    assert result.instance_name == PHONE_NUMBER_ID


def test_changes_for_another_number_of_the_app_are_ignored(adapter, target, fake, webhooks):
    fake.inbound_send("other_number")

    request = webhooks(1)[0]
    result = adapter.parse_webhook(target, request)

    assert result.events == []
    assert result.instance_name == ""
    assert webhook_phone_number_ids(request.body) == ["100000000000001"]


def test_statuses_out_of_order_are_reported_as_they_come(adapter, target, fake, webhooks):
    message_id = adapter.send_text(target, to="+5511912345678", text="Oi").provider_message_id
    webhooks(3)
    fake.statuses_send(message_id, ["read", "delivered"])

    read, delivered = _events(adapter, target, webhooks(5)[3:])

    assert (read.status, delivered.status) == ("read", "delivered")
    assert read.timestamp > delivered.timestamp  # read really happened later; the service orders them


def test_batched_statuses_in_one_webhook_are_all_parsed(adapter, target, fake, webhooks):
    fake.statuses_send("wamid.BATCHED=", ["sent", "delivered", "read"], batched=True)

    updates = _events(adapter, target, webhooks(1))

    assert [update.status for update in updates] == ["sent", "delivered", "read"]


def test_played_voice_message_is_reported_as_read(adapter, paper_target):
    body = json.dumps(_status_payload("played")).encode()

    [update] = adapter.parse_webhook(paper_target, _signed(body)).events

    assert update.status == "read"


def test_duplicate_webhooks_arrive_and_parse_alike(adapter, target, fake, webhooks):
    fake.faults_set(duplicate_webhooks=True)
    fake.inbound_send("text")

    first, second = webhooks(2)

    assert first.body == second.body
    assert _events(adapter, target, [first]) == _events(adapter, target, [second])


def test_reordered_webhooks_arrive_and_parse(adapter, target, fake, webhooks):
    fake.faults_set(reorder_webhooks=True)
    adapter.send_text(target, to="+5511912345678", text="Oi")
    webhooks(2)
    fake.webhook_flush()

    updates = _events(adapter, target, webhooks(3))

    assert [update.status for update in updates] == ["delivered", "sent", "read"]


def test_non_ascii_text_verifies_over_the_raw_bytes_only(adapter, target, fake, webhooks):
    fake.inbound_send("text", text="Olá, tudo bem? 😀")
    request = webhooks(1)[0]

    [message] = adapter.parse_webhook(target, request).events
    assert b"\\u00e1" in request.body  # Meta escapes non-ASCII
    assert message.text == "Olá, tudo bem? 😀"

    reserialized = json.dumps(json.loads(request.body), ensure_ascii=False).encode()
    tampered = WebhookRequest(request.method, request.url, request.headers, reserialized, request.query)
    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(target, tampered)
    assert caught.value.status == 403


def test_subscription_handshake_answers_the_challenge(adapter, target, fake, webhooks):
    status, _ = fake.subscription_verify(challenge="1158201444")

    request = webhooks(1)[0]
    result = adapter.parse_webhook(target, request)

    assert status == 200
    assert request.method == "GET"
    assert result.events == []
    assert result.response_body == b"1158201444"
    assert result.response_content_type == "text/plain"


# --- webhooks: reference payloads and rejections ---------------------------------------------------------------
REFERENCE_INBOUND = """{"object": "whatsapp_business_account",
 "entry": [{"id": "102938475610293", "changes": [{"field": "messages", "value": {
   "messaging_product": "whatsapp",
   "metadata": {"display_phone_number": "15550100200", "phone_number_id": "109876543210987"},
   "contacts": [{"profile": {"name": "Maria"}, "wa_id": "5511912345678", "user_id": "BR.1234567890123456789"}],
   "messages": [{"from": "5511912345678", "id": "wamid.HBgNNTUxMTkxMjM0NTY3OBUCABIYFDNBNEQ=",
                 "timestamp": "1741616525", "type": "text", "text": {"body": "Oi"}}]}}]}]}"""

REFERENCE_FAILED_STATUS = """{"object": "whatsapp_business_account",
 "entry": [{"id": "102938475610293", "changes": [{"field": "messages",
 "value": {"messaging_product": "whatsapp",
  "metadata": {"display_phone_number": "15550100200", "phone_number_id": "109876543210987"},
  "statuses": [{"id": "wamid.HBgNNTUxMTkxMjM0NTY3OBUCABEYEjQ2QjNBRTk5", "status": "failed",
                "timestamp": "1741616700", "recipient_id": "5511912345678",
                "errors": [{"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
                            "error_data": {
                              "details": "More than 24 hours have passed since the customer last replied."}}]}]}}]}]}"""


def _status_payload(status: str) -> dict:
    payload = json.loads(REFERENCE_FAILED_STATUS)
    item = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
    item["status"] = status
    del item["errors"]
    return payload


def test_reference_inbound_text_payload(adapter, paper_target):
    result = adapter.parse_webhook(paper_target, _signed(REFERENCE_INBOUND.encode()))

    assert result.events == [
        InboundMessage(
            provider_message_id="wamid.HBgNNTUxMTkxMjM0NTY3OBUCABIYFDNBNEQ=",
            chat_id="5511912345678",
            sender_ids=("5511912345678", "BR.1234567890123456789"),
            timestamp=datetime(2025, 3, 10, 14, 22, 5, tzinfo=UTC),
            type="text",
            text="Oi",
            sender_name="Maria",
        )
    ]


def test_reference_image_payload_keeps_the_media_id(adapter, paper_target):
    payload = json.loads(REFERENCE_INBOUND)
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message.pop("text")
    message["type"] = "image"
    message["image"] = {"id": "1203948576", "mime_type": "image/jpeg", "sha256": "abc", "caption": "Recibo"}

    [event] = adapter.parse_webhook(paper_target, _signed(json.dumps(payload).encode())).events

    assert (event.type, event.text, event.media_mime_type, event.media_url) == ("image", "Recibo", "image/jpeg", "")
    assert media_id_of(event) == "1203948576"


def test_reference_failed_status_payload(adapter, paper_target):
    [update] = adapter.parse_webhook(paper_target, _signed(REFERENCE_FAILED_STATUS.encode())).events

    assert update == StatusUpdate(
        provider_message_id="wamid.HBgNNTUxMTkxMjM0NTY3OBUCABEYEjQ2QjNBRTk5",
        status="failed",
        timestamp=datetime(2025, 3, 10, 14, 25, tzinfo=UTC),
        error_code="131047",
        error_message="Re-engagement message: More than 24 hours have passed since the customer last replied.",
    )


def test_missing_signature_is_rejected_with_401(adapter, paper_target):
    request = _signed(REFERENCE_INBOUND.encode())
    unsigned = WebhookRequest("POST", request.url, {"Content-Type": "application/json"}, request.body)

    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(paper_target, unsigned)

    assert caught.value.status == 401


def test_signature_with_another_secret_is_rejected_with_403(adapter, paper_target):
    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(paper_target, _signed(REFERENCE_INBOUND.encode(), secret="another-app-secret"))

    assert caught.value.status == 403


def test_subscription_with_a_wrong_verify_token_is_rejected_with_403(adapter, paper_target):
    query = {"hub.mode": ["subscribe"], "hub.verify_token": ["guess"], "hub.challenge": ["42"]}
    request = WebhookRequest("GET", "https://conversa.example.test/webhooks/meta_cloud/", {}, b"", query)

    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(paper_target, request)

    assert caught.value.status == 403


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"object": "whatsapp_business_account", "entry": "nope"}', b"\xff\xfe"],
    ids=["not-json", "not-an-object", "entry-not-a-list", "not-utf8"],
)
def test_malformed_body_is_rejected_with_400(adapter, paper_target, body):
    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(paper_target, _signed(body))

    assert caught.value.status == 400


def test_message_without_timestamp_is_rejected_with_400(adapter, paper_target):
    payload = json.loads(REFERENCE_INBOUND)
    del payload["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"]

    with pytest.raises(WebhookRejectedError) as caught:
        adapter.parse_webhook(paper_target, _signed(json.dumps(payload).encode()))

    assert caught.value.status == 400


def test_unknown_event_types_are_ignored(adapter, paper_target):
    account_update = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102938475610293",
                "changes": [{"field": "account_update", "value": {"phone_number": "15550100200", "event": "VERIFIED"}}],
            }
        ],
    }
    unknown_status = _status_payload("deleted")

    for payload in (account_update, unknown_status, {"object": "page", "entry": []}):
        assert adapter.parse_webhook(paper_target, _signed(json.dumps(payload).encode())).events == []
