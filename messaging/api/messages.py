"""API of messages: a chat's history (cursor paging both ways), one message, its media, and the
outbox: send (202, Idempotency-Key), retry, cancel. Thin views over messaging.services.outbound.

Input serializers validate requests; output is built by plain functions (DRF's model serializers
measured ~12x slower on this machine, and history pages and sends are the hot paths). The
serializers named `...Out` only document those shapes in the OpenAPI schema.
"""

from django.db.models import Q
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from messaging.api.base import OrganizationApi, iso, query_validated
from messaging.api.chats import chat_of_request
from messaging.api.errors import ApiError
from messaging.api.pagination import LIMIT_PARAMETER, LimitSerializer, cursor_encode, cursor_time_and_id
from messaging.api.permissions import request_person
from messaging.api.schema import api_doc
from messaging.models import Message
from messaging.services.outbound import (
    IdempotencyKeyReusedError,
    MessageStateError,
    QuotaExceededError,
    message_cancel,
    message_retry,
    message_send,
)

MAX_TEXT_CHARS = 4096  # WhatsApp's limit for a text message body
MAX_MEDIA_BYTES = 16 * 1024 * 1024  # WhatsApp's limit for audio, video and images
IDEMPOTENCY_KEY_MAX_CHARS = 128


# --- shapes ------------------------------------------------------------------------------------------
class MessageSendIn(serializers.Serializer):
    text = serializers.CharField(
        max_length=MAX_TEXT_CHARS, trim_whitespace=False, required=False, allow_blank=True, help_text="Or a caption."
    )
    scheduled_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Send later (ISO 8601).")

    def validate_scheduled_at(self, value):
        # A time already past means "now": it is sent at once rather than refused.
        if value is not None and value <= timezone.now():
            return None
        return value

    def validate(self, data):
        if not data.get("text", "").strip() and not data.get("media"):
            raise serializers.ValidationError({"text": ["The message needs some text (or a media file)."]})
        return data


class MessageSendMediaIn(MessageSendIn):
    media = serializers.FileField(
        required=False, help_text=f"An image, audio, video or document, ≤ {MAX_MEDIA_BYTES} bytes."
    )

    def validate_media(self, value):
        if value.size > MAX_MEDIA_BYTES:
            raise serializers.ValidationError(f"Media files may be at most {MAX_MEDIA_BYTES} bytes.")
        return value


class MessageOut(serializers.Serializer):
    id = serializers.IntegerField()
    chat = serializers.IntegerField()
    number = serializers.IntegerField()
    direction = serializers.ChoiceField(choices=Message.Direction.choices)
    type = serializers.ChoiceField(choices=Message.Type.choices)
    text = serializers.CharField()
    status = serializers.ChoiceField(choices=Message.Status.choices)
    error = serializers.CharField()
    attempts = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    provider_message_id = serializers.CharField(allow_null=True)
    idempotency_key = serializers.CharField(allow_null=True)
    media_state = serializers.ChoiceField(choices=Message.MediaState.choices)
    media_url = serializers.CharField(allow_null=True, help_text="Our copy of the media (API path), once stored.")
    media_mime_type = serializers.CharField()
    media_filename = serializers.CharField()
    scheduled_at = serializers.DateTimeField(allow_null=True)
    timestamp = serializers.DateTimeField(help_text="WhatsApp's time; history is ordered by it.")
    created_at = serializers.DateTimeField()


class MessagePageOut(serializers.Serializer):
    results = MessageOut(many=True, help_text="Oldest first.")
    older = serializers.CharField(allow_null=True, help_text="`before` cursor of the older page; null at the start.")
    newer = serializers.CharField(
        allow_null=True, help_text="`after` cursor for what came after this page (poll it); null on an empty page."
    )
    has_older = serializers.BooleanField()
    has_newer = serializers.BooleanField(help_text="More messages after this page exist now.")


class HistoryQuery(LimitSerializer):
    before = serializers.CharField(required=False)
    after = serializers.CharField(required=False)

    def validate(self, data):
        if "before" in data and "after" in data:
            raise serializers.ValidationError({"before": ["Give `before` or `after`, not both."]})
        return data


def message_output(message: Message) -> dict:
    """Return the API's JSON for a message."""
    has_media = message.media_state == Message.MediaState.STORED and bool(message.media)
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
        "media_state": message.media_state,
        "media_url": reverse("api:message-media", args=[message.pk]) if has_media else None,
        "media_mime_type": message.media_mime_type,
        "media_filename": message.media_filename,
        "scheduled_at": iso(message.scheduled_at),
        "timestamp": iso(message.timestamp),
        "created_at": iso(message.created_at),
    }


def _history_cursor(message: Message) -> str:
    return cursor_encode(message.timestamp, message.pk)


# --- helpers -----------------------------------------------------------------------------------------
def message_of_request(view: OrganizationApi, message_id: int, **filters) -> Message:
    return get_object_or_404(Message, pk=message_id, organization_id=view.organization_id(), **filters)


def _idempotency_key(request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX_CHARS:
        raise ApiError(
            status_code=400,
            code="invalid_idempotency_key",
            message=f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_CHARS} characters.",
            details={"header": "Idempotency-Key"},
        )
    return key


def _state_conflict(error: MessageStateError) -> ApiError:
    return ApiError(status_code=409, code="invalid_state", message=str(error))


def _quota_exceeded(error: QuotaExceededError) -> ApiError:
    retry_after = max(1, int((error.resets_at - timezone.now()).total_seconds()))
    return ApiError(
        status_code=429,
        code="quota_exceeded",
        message=str(error),
        details={"limit": error.limit, "resets_at": error.resets_at.isoformat()},
        headers={"Retry-After": str(retry_after), "X-Quota-Reset": http_date(error.resets_at.timestamp())},
    )


# --- views -------------------------------------------------------------------------------------------
class ChatMessagesApi(OrganizationApi):
    """A chat's history (GET) and sending into it (POST)."""

    parser_classes = [JSONParser, MultiPartParser]

    @api_doc(
        summary="A chat's history, a page at a time, in both directions",
        responses={200: MessagePageOut},
        parameters=[
            LIMIT_PARAMETER,
            OpenApiParameter("before", OpenApiTypes.STR, description="The `older` cursor: the page before it."),
            OpenApiParameter("after", OpenApiTypes.STR, description="The `newer` cursor: the page after it."),
        ],
        description="Without a cursor: the latest page. Messages are ordered by WhatsApp's time, then id.",
    )
    def get(self, request, chat_id: int):
        chat = chat_of_request(self, chat_id)
        query = query_validated(HistoryQuery, request)
        limit = query["limit"]
        messages = Message.objects.filter(chat_id=chat.pk)
        if "after" in query:
            moment, message_id = cursor_time_and_id(query["after"], name="after")
            newer = Q(timestamp__gt=moment) | Q(timestamp=moment, id__gt=message_id)
            rows = list(messages.filter(newer).order_by("timestamp", "id")[: limit + 1])
            has_newer, has_older = len(rows) > limit, True
            rows = rows[:limit]
        else:
            if "before" in query:
                moment, message_id = cursor_time_and_id(query["before"], name="before")
                older = Q(timestamp__lt=moment) | Q(timestamp=moment, id__lt=message_id)
                messages = messages.filter(older)
            rows = list(messages.order_by("-timestamp", "-id")[: limit + 1])
            has_older, has_newer = len(rows) > limit, "before" in query
            rows = rows[:limit][::-1]
        return Response(
            {
                "results": [message_output(message) for message in rows],
                "older": _history_cursor(rows[0]) if rows and has_older else None,
                "newer": _history_cursor(rows[-1]) if rows else query.get("after"),
                "has_older": has_older and bool(rows),
                "has_newer": has_newer,
            }
        )

    @api_doc(
        summary="Send a text or media message (queued: answers 202 at once)",
        request={"application/json": MessageSendIn, "multipart/form-data": MessageSendMediaIn},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Any unique string ≤ 128 characters: a replay answers the first message and sends nothing.",
            )
        ],
        responses={202: MessageOut},
        errors={
            422: "The Idempotency-Key was already used for another message (`idempotency_key_reused`).",
            429: "Rate limit (`throttled`), or the plan's daily message quota is used up (`quota_exceeded`, "
            "with Retry-After until the next UTC midnight).",
        },
    )
    def post(self, request, chat_id: int):
        chat = chat_of_request(self, chat_id)
        key = _idempotency_key(request)
        data = MessageSendMediaIn(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            message, created = message_send(
                organization=chat.organization,  # loaded with its plan, which the quota needs
                chat=chat,
                sent_by=request_person(request),
                text=data.validated_data.get("text", ""),
                media=data.validated_data.get("media"),
                idempotency_key=key,
                scheduled_at=data.validated_data.get("scheduled_at"),
            )
        except QuotaExceededError as error:
            raise _quota_exceeded(error) from error
        except IdempotencyKeyReusedError as error:
            raise ApiError(
                status_code=422,
                code="idempotency_key_reused",
                message=str(error),
                details={"header": "Idempotency-Key"},
            ) from error
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response(message_output(message), status=status.HTTP_202_ACCEPTED, headers=headers)


class MessageDetailApi(OrganizationApi):
    @api_doc(summary="Get a message", responses={200: MessageOut})
    def get(self, request, message_id: int):
        return Response(message_output(message_of_request(self, message_id)))


class MessageMediaApi(OrganizationApi):
    @api_doc(
        summary="Download a message's media from our storage",
        responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The file.")},
    )
    def get(self, request, message_id: int):
        message = message_of_request(self, message_id, media_state=Message.MediaState.STORED)
        if not message.media:
            raise ApiError(status_code=404, code="not_found", message="This message has no stored media.")
        response = FileResponse(
            message.media.open("rb"),
            content_type="application/octet-stream",
            as_attachment=True,
            filename=message.media_filename or message.media.name.rsplit("/", 1)[-1],
        )
        response["X-Content-Type-Options"] = "nosniff"
        return response


class MessageRetryApi(OrganizationApi):
    @api_doc(
        summary="Send a failed message again",
        request=None,
        responses={202: MessageOut},
        errors={409: "Only failed outbound messages can be retried (`invalid_state`)."},
    )
    def post(self, request, message_id: int):
        message = message_of_request(self, message_id, direction=Message.Direction.OUTBOUND)
        try:
            message = message_retry(message=message)
        except MessageStateError as error:
            raise _state_conflict(error) from error
        return Response(message_output(message), status=status.HTTP_202_ACCEPTED)


class MessageCancelApi(OrganizationApi):
    @api_doc(
        summary="Cancel a message still queued (scheduled, or waiting to retry)",
        request=None,
        responses={200: MessageOut},
        errors={409: "The message is being sent or was sent (`invalid_state`)."},
    )
    def post(self, request, message_id: int):
        message = message_of_request(self, message_id, direction=Message.Direction.OUTBOUND)
        try:
            message = message_cancel(message=message, cancelled_by=request.user)
        except MessageStateError as error:
            raise _state_conflict(error) from error
        return Response(message_output(message))
