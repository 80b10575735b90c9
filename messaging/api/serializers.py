"""Input serializers validate requests; output is built by plain functions (DRF's model
serializers measured ~12x slower on this machine, and sends are the hot path)."""

from django.utils import timezone
from rest_framework import serializers

from messaging.models import Message

MAX_TEXT_CHARS = 4096  # WhatsApp's limit for a text message body


class MessageSendInputSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=MAX_TEXT_CHARS, trim_whitespace=False)
    scheduled_at = serializers.DateTimeField(required=False, allow_null=True)

    def validate_text(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("The message needs some text.")
        return value

    def validate_scheduled_at(self, value):
        # A time already past means "now": it is sent at once rather than refused.
        if value is not None and value <= timezone.now():
            return None
        return value


def message_output(message: Message) -> dict:
    """Return the API's JSON for a message."""
    return {
        "id": message.pk,
        "chat": message.chat_id,
        "number": message.number_id,
        "direction": message.direction,
        "type": message.type,
        "text": message.text,
        "status": message.status,
        "error": message.error,
        "attempts": message.attempts,
        "max_attempts": message.max_attempts,
        "provider_message_id": message.provider_message_id,
        "idempotency_key": message.idempotency_key,
        "scheduled_at": _iso(message.scheduled_at),
        "timestamp": _iso(message.timestamp),
        "created_at": _iso(message.created_at),
    }


def _iso(value):
    return value.isoformat() if value else None
