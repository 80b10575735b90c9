import json

import pytest

from providers.base import (
    InboundMessage,
    ProviderAdapter,
    ProviderError,
    ProviderTarget,
    StatusUpdate,
    UnknownProviderError,
    WebhookRejectedError,
    WebhookRequest,
)
from providers.registry import ADAPTERS, ProviderName, adapter_for

TARGET = ProviderTarget(provider="fake", instance_name="demo", webhook_secret="s3cret")


def _webhook(payload, secret="s3cret") -> WebhookRequest:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return WebhookRequest(method="POST", url="http://x/", headers={"Authorization": f"Bearer {secret}"}, body=body)


def test_unknown_provider_is_a_clear_error():
    with pytest.raises(UnknownProviderError, match="No WhatsApp provider is called 'carrier-pigeon'"):
        adapter_for("carrier-pigeon")


def test_every_provider_name_has_an_adapter_entry():
    assert set(ADAPTERS) == set(ProviderName.values)


def test_fake_adapter_is_registered():
    adapter = adapter_for("fake")
    assert isinstance(adapter, ProviderAdapter)
    assert adapter.name == "fake"


def test_fake_send_returns_a_fresh_provider_id():
    adapter = adapter_for("fake")
    first = adapter.send_text(TARGET, to="+5511912345678", text="hi")
    second = adapter.send_text(TARGET, to="+5511912345678", text="hi")
    assert first.provider_message_id != second.provider_message_id
    assert first.recipient_id == "5511912345678"


def test_fake_send_to_a_number_not_on_whatsapp_is_permanent():
    with pytest.raises(ProviderError) as error:
        adapter_for("fake").send_text(TARGET, to="+5511900000000", text="hi")
    assert error.value.permanent


def test_fake_inbound_webhook_becomes_an_inbound_message():
    result = adapter_for("fake").parse_webhook(
        TARGET,
        _webhook({"event": "message", "id": "m1", "from": "+5511912345678", "text": "Oi", "timestamp": 1741616525}),
    )
    [message] = result.events
    assert isinstance(message, InboundMessage)
    assert (message.provider_message_id, message.text, message.timestamp.timestamp()) == ("m1", "Oi", 1741616525)


def test_fake_status_webhook_becomes_a_status_update():
    [update] = (
        adapter_for("fake").parse_webhook(TARGET, _webhook({"event": "status", "id": "m1", "status": "read"})).events
    )
    assert isinstance(update, StatusUpdate)
    assert update.status == "read"


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (_webhook({"event": "message"}, secret="wrong"), 403),
        (WebhookRequest(method="POST", url="http://x/", headers={}, body=b"{}"), 401),
        (_webhook(b"{not json"), 400),
        (_webhook(b"[1, 2]"), 400),
        (_webhook({"event": "message", "text": "no id or sender"}), 400),
        (_webhook({"event": "message", "id": "m", "from": "x", "timestamp": "soon"}), 400),
    ],
)
def test_fake_rejects_bad_webhooks(request_, status):
    with pytest.raises(WebhookRejectedError) as error:
        adapter_for("fake").parse_webhook(TARGET, request_)
    assert error.value.status == status


def test_fake_ignores_unknown_events():
    assert adapter_for("fake").parse_webhook(TARGET, _webhook({"event": "presence"})).events == []
    assert (
        adapter_for("fake").parse_webhook(TARGET, _webhook({"event": "connection", "state": "nonsense"})).events == []
    )
