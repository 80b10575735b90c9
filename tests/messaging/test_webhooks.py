"""Provider webhooks into our endpoint: bodies as each fake provider server really sends them.

The fakes post to a webhook sink over loopback; the captured requests are replayed, byte for byte
and header for header, into our view through the Django test client (PUBLIC_BASE_URL is the sink's
URL, so Twilio's signature over the URL still matches).
"""

import json
import time
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from django.core.cache import cache

from crm.models import Chat, Contact, ContactIdentity, WhatsAppNumber
from messaging.models import Event, Message
from messaging.services.inbound import qr_cache_key
from providers.base import WebhookRequest
from providers.evolution import EvolutionAdapter
from providers.fakes.evolution import LID_JID, FakeEvolutionServer
from providers.fakes.green_api import FakeGreenApiServer
from providers.fakes.meta_cloud import FakeMetaCloudServer
from providers.fakes.twilio import FakeTwilioServer
from providers.registry import ProviderName
from tests.factories import MessageFactory, ProviderServerFactory, WhatsAppNumberFactory
from tests.providers.webhook_sink import WebhookSink

pytestmark = pytest.mark.django_db

SENDER = "5511912345678"
SENDER_E164 = "+5511912345678"


@pytest.fixture
def sink(settings):
    sink = WebhookSink()
    settings.PUBLIC_BASE_URL = sink.url
    yield sink
    sink.stop()


@pytest.fixture(autouse=True)
def _media_tasks_not_queued(monkeypatch):
    # Downloads are tested in test_media; here a pending download must only be recorded.
    monkeypatch.setattr("messaging.tasks.inbound.media_download.delay", lambda message_id: None)


def replay(client, request: WebhookRequest, *, path: str | None = None, body: bytes | None = None):
    """Send a captured webhook to our endpoint as the provider sent it."""
    url = request.url.split("://", 1)[1].split("/", 1)[1]
    headers = {key: value for key, value in request.headers.items() if key.lower() not in ("host", "content-length")}
    content_type = headers.pop("Content-Type", headers.pop("content-type", "application/octet-stream"))
    target = path or "/" + url
    if request.method == "GET":
        return client.get(target, headers=headers)
    return client.post(target, data=request.body if body is None else body, content_type=content_type, headers=headers)


def fake_post(client, number, payload, *, secret=None, path=None):
    """A webhook of the built-in fake provider, as a developer's curl would send it."""
    return client.post(
        path or f"/webhooks/fake/{number.instance_name}/",
        data=json.dumps(payload) if isinstance(payload, dict) else payload,
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret or number.webhook_secret}"},
    )


# --- Evolution ------------------------------------------------------------------------------------------
@pytest.fixture
def evolution(sink):
    server = FakeEvolutionServer(api_key="evo-key", webhook_delay_seconds=0.0, auto_status=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def evolution_number(evolution, sink):
    from crm.selectors import number_provider_target

    server = ProviderServerFactory(base_url=evolution.url, api_key="evo-key")
    number = WhatsAppNumberFactory(provider=ProviderName.EVOLUTION, server=server, phone="")
    EvolutionAdapter().provision(number_provider_target(number))
    return number


def _evolution_deliver(client, sink, seen: int, count: int = 1) -> list:
    return [replay(client, request) for request in sink.wait_for(seen + count)[seen:]]


def test_evolution_qr_then_connection_open_caches_qr_and_connects_number(
    client, evolution, evolution_number, sink, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        [qr_response] = _evolution_deliver(client, sink, 0)
    assert qr_response.status_code == 200
    assert cache.get(qr_cache_key(evolution_number.pk))["qr_image"].startswith("data:image/png")
    evolution.scan(evolution_number.instance_name, phone=SENDER)
    responses = _evolution_deliver(client, sink, 1, len(sink.wait_for(2)) - 1)
    assert all(response.status_code == 200 for response in responses)
    evolution_number.refresh_from_db()
    assert evolution_number.state == WhatsAppNumber.State.CONNECTED
    assert evolution_number.phone == SENDER_E164
    assert evolution_number.last_seen_at is not None
    types = list(Event.objects.filter(number=evolution_number).values_list("type", flat=True))
    assert types[0] == "number.qr"
    assert "number.state" in types


@pytest.mark.parametrize(
    ("variant", "expected_type", "expected_text"),
    [
        ("text", "text", "Oi, tudo bem?"),
        ("extended_text", "text", "Oi, tudo bem?"),
        ("image", "image", "Oi, tudo bem?"),
        ("document", "document", "Oi, tudo bem?"),
        ("location", "location", ""),
    ],
)
def test_evolution_inbound_variants_are_stored(
    client, evolution, evolution_number, sink, variant, expected_type, expected_text
):
    seen = len(sink.wait_for(1))
    data = evolution.inbound(evolution_number.instance_name, variant=variant, sender=SENDER)
    [response] = _evolution_deliver(client, sink, seen)
    assert response.status_code == 200
    message = Message.objects.get(provider_message_id=data["key"]["id"])
    assert message.direction == Message.Direction.INBOUND
    assert message.type == expected_type
    if expected_text:
        assert message.text == expected_text
    assert message.chat.contact.phone == SENDER_E164
    assert message.chat.contact.name == "Maria Souza"
    assert message.chat.unread_count == 1
    if variant in ("image", "document"):
        # Our provisioning asks Evolution for base64 media: the file is ours the moment it arrives.
        assert message.media_state == Message.MediaState.STORED
        assert message.media.read()
    if variant == "location":
        assert message.extra["latitude"] == pytest.approx(-23.5505)


def test_evolution_group_and_reaction_store_nothing_and_answer_200(client, evolution, evolution_number, sink):
    seen = len(sink.wait_for(1))
    evolution.inbound(evolution_number.instance_name, variant="group", sender=SENDER)
    evolution.inbound(evolution_number.instance_name, variant="reaction", sender=SENDER)
    evolution.inbound(evolution_number.instance_name, variant="status_broadcast", sender=SENDER)
    responses = _evolution_deliver(client, sink, seen, 3)
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert not Message.objects.exists()
    assert not Chat.objects.exists()


def test_lid_and_phone_of_one_person_end_on_one_contact_and_one_chat(client, evolution, evolution_number, sink):
    seen = len(sink.wait_for(1))
    evolution.inbound(evolution_number.instance_name, variant="text", sender=SENDER, text="first")
    _evolution_deliver(client, sink, seen)
    evolution.inbound(evolution_number.instance_name, variant="lid", sender=SENDER, text="second, by lid")
    _evolution_deliver(client, sink, seen + 1)
    [contact] = Contact.objects.all()
    assert set(contact.identities.values_list("kind", "value")) == {("phone", SENDER_E164), ("lid", LID_JID)}
    [chat] = Chat.objects.all()
    assert list(chat.messages.values_list("text", flat=True)) == ["first", "second, by lid"]
    assert chat.unread_count == 2


def test_lid_first_then_phone_only_still_one_contact(client, evolution, evolution_number, sink):
    seen = len(sink.wait_for(1))
    evolution.inbound(evolution_number.instance_name, variant="lid", sender=SENDER, text="by lid")
    evolution.inbound(evolution_number.instance_name, variant="text", sender=SENDER, text="by phone")
    _evolution_deliver(client, sink, seen, 2)
    assert Contact.objects.count() == 1
    assert ContactIdentity.objects.count() == 2
    assert Chat.objects.get().messages.count() == 2


def test_own_send_echoed_back_is_not_stored_twice(client, evolution, evolution_number, sink):
    from crm.selectors import number_provider_target

    evolution.scan(evolution_number.instance_name, phone="5511900000001")
    seen = len(sink.wait_for(2))
    result = EvolutionAdapter().send_text(number_provider_target(evolution_number), to=SENDER_E164, text="Olá")
    sent = MessageFactory(
        chat__organization=evolution_number.organization,
        chat__number=evolution_number,
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.SENT,
        text="Olá",
        provider_message_id=result.provider_message_id,
    )
    time.sleep(0.2)  # the fake emits send.message and the fromMe messages.upsert right after
    for request in sink.received[seen:]:
        assert replay(client, request).status_code == 200
    assert list(Message.objects.values_list("pk", flat=True)) == [sent.pk]


# --- Green API ----------------------------------------------------------------------------------------
GREEN_INSTANCE = "green-sales"


@pytest.fixture
def green(sink):
    server = FakeGreenApiServer(
        webhook_url=f"{sink.url}/webhooks/green_api/{GREEN_INSTANCE}/",
        webhook_token="green-secret",
        state="authorized",
        webhook_delay_seconds=0.0,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def green_number(green):
    instance = green.instance()
    return WhatsAppNumberFactory(
        provider=ProviderName.GREEN_API,
        instance_name=GREEN_INSTANCE,
        webhook_secret="green-secret",
        credentials={"id_instance": instance.id_instance, "api_token": instance.api_token, "base_url": green.url},
    )


@pytest.mark.parametrize(
    ("variant", "expected_type"),
    [
        ("textMessage", "text"),
        ("extendedTextMessage", "text"),
        ("imageMessage", "image"),
        ("locationMessage", "location"),
    ],
)
def test_green_api_inbound_variants_are_stored(client, green, green_number, sink, variant, expected_type):
    notification = green.inbound(variant, sender=SENDER, text="Olá")
    [request] = sink.wait_for(1)
    assert replay(client, request).status_code == 200
    message = Message.objects.get(provider_message_id=notification["idMessage"])
    assert message.type == expected_type
    assert message.chat.contact.phone == SENDER_E164
    if expected_type == "image":
        assert message.media_state == Message.MediaState.PENDING
        assert message.media_source.startswith(green.url)


def test_green_api_message_sent_from_the_phone_is_stored_as_outbound_sent(client, green, green_number, sink):
    green.instance().settings["outgoingMessageWebhook"] = "yes"  # Green API's setting for phone-typed messages
    green.phone_send(SENDER_E164.removeprefix("+"), "sent from my phone")
    for request in sink.wait_for(1):
        assert replay(client, request).status_code == 200
    [message] = Message.objects.all()
    assert message.direction == Message.Direction.OUTBOUND
    assert message.status == Message.Status.SENT
    assert message.text == "sent from my phone"
    assert message.chat.contact.phone == SENDER_E164
    assert message.chat.unread_count == 0


def test_green_api_wrong_token_is_refused_and_stores_nothing(client, green, green_number, sink):
    green.inbound("textMessage", sender=SENDER)
    [request] = sink.wait_for(1)
    forged = WebhookRequest(
        method=request.method,
        url=request.url,
        body=request.body,
        headers={**request.headers, "Authorization": "Bearer not-the-token"},
    )
    response = replay(client, forged)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "webhook_rejected"
    assert not Message.objects.exists()
    assert not Contact.objects.exists()


# --- Meta Cloud API -------------------------------------------------------------------------------------
@pytest.fixture
def meta_number(sink):
    return WhatsAppNumberFactory(
        provider=ProviderName.META_CLOUD,
        webhook_secret="meta-verify-token",
        credentials={"phone_number_id": "109876543210987", "access_token": "meta-token", "app_secret": "meta-secret"},
    )


@pytest.fixture
def meta(sink, meta_number):
    server = FakeMetaCloudServer(
        webhook_url=f"{sink.url}/webhooks/meta_cloud/{meta_number.instance_name}/",
        app_secret="meta-secret",
        access_token="meta-token",
        phone_number_id="109876543210987",
        verify_token="meta-verify-token",
        webhook_delay_seconds=0.0,
    )
    server.start()
    meta_number.credentials["base_url"] = f"{server.url}/v21.0"
    meta_number.save(update_fields=["credentials"])
    yield server
    server.stop()


def test_meta_subscription_handshake_answers_the_challenge(client, meta, meta_number, sink):
    meta.subscription_verify(challenge="424242")
    [request] = sink.wait_for(1)
    response = replay(client, request)
    assert response.status_code == 200
    assert response.content == b"424242"


def test_meta_handshake_with_wrong_verify_token_is_403(client, meta_number):
    response = client.get(
        f"/webhooks/meta_cloud/{meta_number.instance_name}/",
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "webhook_rejected"


@pytest.mark.parametrize(("variant", "expected_type"), [("text", "text"), ("image", "image"), ("document", "document")])
def test_meta_inbound_variants_are_stored(client, meta, meta_number, sink, variant, expected_type):
    [wamid] = meta.inbound_send(variant, sender=SENDER)
    [request] = sink.wait_for(1)
    assert replay(client, request).status_code == 200
    message = Message.objects.get(provider_message_id=wamid)
    assert message.type == expected_type
    assert message.chat.contact.phone == SENDER_E164
    if expected_type != "text":
        assert message.media_state == Message.MediaState.PENDING
        assert message.media_source in meta.media  # Meta gives a media id, downloaded through the Graph API


def test_meta_bad_signature_is_refused_and_stores_nothing(client, meta, meta_number, sink):
    meta.inbound_send("text", sender=SENDER)
    [request] = sink.wait_for(1)
    tampered = request.body.replace(b"Oi", b"Hi")
    response = replay(client, request, body=tampered)
    assert response.status_code == 403
    assert not Message.objects.exists()


# --- Twilio -----------------------------------------------------------------------------------------------
@pytest.fixture
def twilio_number(sink):
    return WhatsAppNumberFactory(
        provider=ProviderName.TWILIO,
        credentials={"account_sid": "AC" + "1" * 32, "auth_token": "twilio-token", "from_number": "+15550100200"},
    )


@pytest.fixture
def twilio(sink, twilio_number):
    server = FakeTwilioServer(
        account_sid="AC" + "1" * 32,
        auth_token="twilio-token",
        webhook_url=f"{sink.url}/webhooks/twilio/{twilio_number.instance_name}/",
        webhook_delay_seconds=0.0,
    )
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize(("kind", "expected_type"), [("text", "text"), ("image", "image"), ("location", "location")])
def test_twilio_inbound_variants_are_stored_and_answered_with_twiml(
    client, twilio, twilio_number, sink, kind, expected_type
):
    fields = twilio.inbound_send(kind, **{"from": SENDER_E164, "text": "Oi"})
    [request] = sink.wait_for(1)
    response = replay(client, request)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml") or response["Content-Type"].startswith("application/xml")
    assert b"<Response" in response.content
    message = Message.objects.get(provider_message_id=fields["MessageSid"])
    assert message.type == expected_type
    assert message.chat.contact.phone == SENDER_E164


def test_twilio_bad_signature_is_refused_and_stores_nothing(client, twilio, twilio_number, sink):
    twilio.inbound_send("text", **{"from": SENDER_E164})
    [request] = sink.wait_for(1)
    response = replay(client, request, body=request.body + b"&Extra=1")
    assert response.status_code == 403
    assert not Message.objects.exists()


def test_twilio_missing_signature_is_401(client, twilio_number):
    response = client.post(
        f"/webhooks/twilio/{twilio_number.instance_name}/",
        data="From=whatsapp%3A%2B5511912345678&Body=hi",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"code", "message", "details"}


# --- the built-in fake provider, edges, duplicates -------------------------------------------------------
def test_fake_provider_message_is_stored_with_events(client):
    number = WhatsAppNumberFactory()
    response = fake_post(
        client, number, {"event": "message", "id": "m1", "from": SENDER_E164, "name": "Ana", "text": "Oi"}
    )
    assert response.status_code == 200
    message = Message.objects.get()
    assert (message.text, message.chat.contact.name) == ("Oi", "Ana")
    # One event per message, carrying the chat's new state: one frame per listening inbox.
    assert list(Event.objects.values_list("type", flat=True)) == ["message.created"]
    chat_state = Event.objects.get().payload["chat_state"]
    assert (chat_state["chat"], chat_state["unread_count"]) == (message.chat_id, 1)
    assert chat_state["last_message_preview"] == "Oi"


def test_same_webhook_delivered_three_times_stores_one_message(client):
    number = WhatsAppNumberFactory()
    payload = {"event": "message", "id": "dup-1", "from": SENDER_E164, "text": "once"}
    statuses = [fake_post(client, number, payload).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert Message.objects.count() == 1
    assert Chat.objects.get().unread_count == 1
    assert Event.objects.filter(type="message.created").count() == 1


def test_history_follows_provider_time_when_webhooks_arrive_out_of_order(client):
    number = WhatsAppNumberFactory()
    later, earlier = 1_700_000_100, 1_700_000_000
    fake_post(
        client, number, {"event": "message", "id": "b", "from": SENDER_E164, "text": "second", "timestamp": later}
    )
    fake_post(
        client, number, {"event": "message", "id": "a", "from": SENDER_E164, "text": "first", "timestamp": earlier}
    )
    chat = Chat.objects.get()
    assert list(chat.messages.values_list("text", flat=True)) == ["first", "second"]
    assert chat.last_message_at == datetime.fromtimestamp(later, tz=UTC)
    assert chat.last_message_preview == "second"  # the late, older message does not take the preview
    assert chat.unread_count == 2


def test_status_webhook_moves_our_outbound_message_forward(client):
    sent = MessageFactory(direction=Message.Direction.OUTBOUND, status=Message.Status.SENT, provider_message_id="out-1")
    number = sent.number
    assert fake_post(client, number, {"event": "status", "id": "out-1", "status": "read"}).status_code == 200
    sent.refresh_from_db()
    assert sent.status == Message.Status.READ
    assert Event.objects.filter(type="message.status", chat=sent.chat).exists()


@pytest.mark.parametrize(
    ("build", "status", "code"),
    [
        (lambda number: fake_post_args(number, secret="wrong"), 403, "webhook_rejected"),
        (lambda number: fake_post_args(number, payload="{not json"), 400, "webhook_rejected"),
        (lambda number: fake_post_args(number, path="/webhooks/fake/no-such-instance/"), 404, "unknown_instance"),
        (
            lambda number: fake_post_args(number, path=f"/webhooks/evolution/{number.instance_name}/"),
            404,
            "unknown_instance",
        ),
        (
            lambda number: fake_post_args(number, payload={"event": "message", "from": SENDER_E164}),
            400,
            "webhook_rejected",
        ),
    ],
    ids=["bad-secret", "malformed-json", "unknown-instance", "wrong-provider", "missing-id"],
)
def test_bad_webhooks_get_a_4xx_and_store_nothing(client, build, status, code):
    number = WhatsAppNumberFactory()
    response = fake_post(client, number, **build(number))
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert not Message.objects.exists()
    assert not Contact.objects.exists()
    assert not Event.objects.exists()


def fake_post_args(number, *, secret=None, payload=None, path=None):
    payload = payload if payload is not None else {"event": "message", "id": uuid4().hex, "from": SENDER_E164}
    return {"payload": payload, "secret": secret, "path": path}


def test_huge_body_is_413_and_stores_nothing(client, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1024
    number = WhatsAppNumberFactory()
    payload = {"event": "message", "id": "big", "from": SENDER_E164, "text": "x" * 2000}
    response = fake_post(client, number, payload)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert not Message.objects.exists()


def test_unknown_event_is_answered_200_with_nothing_stored(client):
    number = WhatsAppNumberFactory()
    assert fake_post(client, number, {"event": "presence", "id": "x"}).status_code == 200
    assert not Message.objects.exists()
    assert not Event.objects.exists()


def test_webhook_from_outside_the_server_allowlist_is_403(client):
    server = ProviderServerFactory(provider=ProviderName.FAKE, allowed_webhook_ips="10.0.0.0/8\n192.168.1.7")
    number = WhatsAppNumberFactory(server=server)
    payload = {"event": "message", "id": "m1", "from": SENDER_E164}
    response = fake_post(client, number, payload)  # the test client calls from 127.0.0.1
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "source_not_allowed"
    assert not Message.objects.exists()
    server.allowed_webhook_ips = "127.0.0.0/8"
    server.save()
    assert fake_post(client, number, payload).status_code == 200


def test_connection_webhook_updates_number_state_and_pushes_to_number_room(client):
    number = WhatsAppNumberFactory(state=WhatsAppNumber.State.CONNECTED)
    assert fake_post(client, number, {"event": "connection", "state": "disconnected"}).status_code == 200
    number.refresh_from_db()
    assert number.state == WhatsAppNumber.State.DISCONNECTED
    assert number.last_seen_at is not None
    event = Event.objects.get(type="number.state")
    assert (event.number_id, event.payload["state"]) == (number.pk, "disconnected")


def test_get_on_a_post_only_provider_is_not_a_500(client):
    number = WhatsAppNumberFactory()
    response = client.get(f"/webhooks/fake/{number.instance_name}/")
    assert 400 <= response.status_code < 500
