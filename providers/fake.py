"""The built-in fake provider: no server, no network, for development and tests of our own code.

Numbers on it connect at once; sends succeed with a fresh id, except to numbers ending in 0000,
which are "not on WhatsApp" (a permanent error), like the fake provider servers. Its webhooks use a
small JSON format of our own so a developer can post an inbound message with curl:

    curl -X POST <webhook url> -H "Authorization: Bearer <number webhook secret>" \\
         -d '{"event": "message", "id": "m1", "from": "+5511912345678", "name": "Maria", "text": "Oi"}'

Events: `message` (fields above, optional `timestamp` in epoch seconds), `status`
(`id`, `status`: sent|delivered|read|failed, optional `error`), `connection` (`state`).
"""

import hmac
import json
import uuid
from datetime import UTC, datetime

from django.utils import timezone

from providers.base import (
    CONNECTION_STATES,
    STATE_CONNECTED,
    ConnectionUpdate,
    ConnectResult,
    HealthResult,
    InboundMessage,
    MediaPayload,
    ProviderAdapter,
    ProviderError,
    ProviderTarget,
    SendResult,
    StatusUpdate,
    WebhookRejectedError,
    WebhookRequest,
    WebhookResult,
)

NOT_ON_WHATSAPP_SUFFIX = "0000"
_STATUSES = {"sent", "delivered", "read", "failed"}


class FakeAdapter(ProviderAdapter):
    name = "fake"

    def provision(self, target: ProviderTarget) -> ConnectResult:
        return ConnectResult(state=STATE_CONNECTED)

    def connect(self, target: ProviderTarget, *, phone: str = "") -> ConnectResult:
        return ConnectResult(state=STATE_CONNECTED)

    def connection_state(self, target: ProviderTarget) -> str:
        return STATE_CONNECTED

    def send_text(self, target: ProviderTarget, *, to: str, text: str, quoted_message_id: str = "") -> SendResult:
        return self._send(to)

    def send_media(self, target: ProviderTarget, *, to: str, media: MediaPayload) -> SendResult:
        if not (media.url or media.content):
            raise ProviderError("Media needs a URL or content.", permanent=True)
        return self._send(to)

    def _send(self, to: str) -> SendResult:
        digits = "".join(character for character in to if character.isdigit())
        if not digits or digits.endswith(NOT_ON_WHATSAPP_SUFFIX):
            raise ProviderError(f"{to} is not on WhatsApp.", permanent=True, code="not_on_whatsapp")
        return SendResult(provider_message_id=f"fake-{uuid.uuid4().hex}", recipient_id=digits)

    def mark_read(self, target: ProviderTarget, *, chat_id: str, provider_message_id: str) -> None:
        return None  # nothing to tell: the fake has no phone that shows blue ticks

    def logout(self, target: ProviderTarget) -> None:
        return None  # the fake keeps no session

    def restart(self, target: ProviderTarget) -> None:
        return None  # the fake keeps no session

    def delete(self, target: ProviderTarget) -> None:
        return None  # the fake keeps no instance

    def health(self, target: ProviderTarget) -> HealthResult:
        return HealthResult(is_healthy=True, latency_ms=0)

    def parse_webhook(self, target: ProviderTarget, request: WebhookRequest) -> WebhookResult:
        token = request.header("Authorization").removeprefix("Bearer ").strip()
        if not token:
            raise WebhookRejectedError("Missing Authorization header.", status=401)
        if not hmac.compare_digest(token.encode(), target.webhook_secret.encode()):
            raise WebhookRejectedError("Wrong webhook secret.", status=403)
        try:
            payload = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as error:
            raise WebhookRejectedError("Body is not JSON.", status=400) from error
        if not isinstance(payload, dict):
            raise WebhookRejectedError("Body must be a JSON object.", status=400)
        event = _event_from_payload(payload)
        return WebhookResult(events=[event] if event else [], instance_name=target.instance_name)


def _event_from_payload(payload: dict):
    kind = payload.get("event")
    try:
        if kind == "message":
            sender = str(payload["from"])
            return InboundMessage(
                provider_message_id=str(payload["id"]),
                chat_id=sender,
                sender_ids=(sender,),
                sender_name=str(payload.get("name", "")),
                text=str(payload.get("text", "")),
                timestamp=_timestamp(payload.get("timestamp")),
            )
        if kind == "status" and payload.get("status") in _STATUSES:
            return StatusUpdate(
                provider_message_id=str(payload["id"]),
                status=payload["status"],
                timestamp=timezone.now(),
                error_message=str(payload.get("error", "")),
            )
        if kind == "connection" and payload.get("state") in CONNECTION_STATES:
            return ConnectionUpdate(state=payload["state"])
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise WebhookRejectedError(f"Malformed {kind} event: {error}", status=400) from error
    return None


def _timestamp(value) -> datetime:
    if value is None:
        return timezone.now()
    return datetime.fromtimestamp(int(value), tz=UTC)
