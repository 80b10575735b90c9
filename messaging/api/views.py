"""API views of the outbox: thin, input serializer → service → output."""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.http import http_date
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.models import Chat
from messaging.api.errors import ApiError
from messaging.api.serializers import MessageSendInputSerializer, message_output
from messaging.models import Message
from messaging.selectors import chats_of_member, messages_of_member
from messaging.services.outbound import (
    IdempotencyKeyReusedError,
    MessageStateError,
    QuotaExceededError,
    message_cancel,
    message_retry,
    message_send,
)

IDEMPOTENCY_KEY_MAX_CHARS = 128


def _chat_of_member(user, chat_id: int) -> Chat:
    """Return the chat when the user is a member of its organization; 404 otherwise (never 403)."""
    return get_object_or_404(chats_of_member(user=user).select_related("organization__plan"), pk=chat_id)


def _message_of_member(user, message_id: int) -> Message:
    return get_object_or_404(messages_of_member(user=user), pk=message_id, direction=Message.Direction.OUTBOUND)


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


class MessageSendApi(APIView):
    """Queue a message in a chat; answer at once with the queued message (202)."""

    permission_classes = [IsAuthenticated]

    def post(self, request, chat_id: int):
        chat = _chat_of_member(request.user, chat_id)
        key = _idempotency_key(request)
        data = MessageSendInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            message, created = message_send(
                organization=chat.organization,
                chat=chat,
                sent_by=request.user,
                text=data.validated_data["text"],
                idempotency_key=key,
                scheduled_at=data.validated_data.get("scheduled_at"),
            )
        except QuotaExceededError as error:
            retry_after = max(1, int((error.resets_at - timezone.now()).total_seconds()))
            raise ApiError(
                status_code=429,
                code="quota_exceeded",
                message=str(error),
                details={"limit": error.limit, "resets_at": error.resets_at.isoformat()},
                headers={"Retry-After": str(retry_after), "X-Quota-Reset": http_date(error.resets_at.timestamp())},
            ) from error
        except IdempotencyKeyReusedError as error:
            raise ApiError(
                status_code=422,
                code="idempotency_key_reused",
                message=str(error),
                details={"header": "Idempotency-Key"},
            ) from error
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response(message_output(message), status=status.HTTP_202_ACCEPTED, headers=headers)


class MessageRetryApi(APIView):
    """Put a failed message back in the outbox."""

    permission_classes = [IsAuthenticated]

    def post(self, request, message_id: int):
        message = _message_of_member(request.user, message_id)
        try:
            message = message_retry(message=message)
        except MessageStateError as error:
            raise _state_conflict(error) from error
        return Response(message_output(message), status=status.HTTP_202_ACCEPTED)


class MessageCancelApi(APIView):
    """Cancel a message that is still queued (scheduled, or waiting to retry)."""

    permission_classes = [IsAuthenticated]

    def post(self, request, message_id: int):
        message = _message_of_member(request.user, message_id)
        try:
            message = message_cancel(message=message, cancelled_by=request.user)
        except MessageStateError as error:
            raise _state_conflict(error) from error
        return Response(message_output(message), status=status.HTTP_200_OK)
