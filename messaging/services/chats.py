"""Writes to a chat: what agents and integrators do to it (assign, status, mark read), and what a new
message does to it (`chat_message_touch`).

The one place these writes live: the inbox pages and the API both call them. Each runs in one
transaction, takes the organization's event-log lock first (the one lock order, see
`messaging.events.event_log_lock`) and appends a `chat.updated` event, so every open inbox sees the
change live and integrators' webhooks can follow it.
"""

from django.db import connection, transaction
from django.utils import timezone

from crm.models import Chat, Membership
from messaging.events import chat_event_data, event_append, event_log_lock, message_preview
from messaging.models import Message


class ChatActionError(Exception):
    """The action does not fit the chat (an assignee from elsewhere, an unknown status)."""


def _chat_locked(chat: Chat) -> Chat:
    event_log_lock(chat.organization_id)
    return Chat.objects.select_for_update().get(pk=chat.pk)


def _chat_changed(chat: Chat, fields: list[str], *, type: str = "chat.updated") -> Chat:
    chat.updated_at = timezone.now()
    chat.save(update_fields=[*fields, "updated_at"])
    event_append(organization_id=chat.organization_id, type=type, chat_id=chat.pk, data=chat_event_data(chat))
    return chat


@transaction.atomic
def chat_assign(*, chat: Chat, assignee: Membership | None) -> Chat:
    """Give the chat to `assignee` (a membership of the chat's organization), or to nobody with None.

    Raise ChatActionError when the assignee belongs to another organization.
    """
    if assignee is not None and assignee.organization_id != chat.organization_id:
        raise ChatActionError("The assignee is not a member of this chat's organization.")
    chat = _chat_locked(chat)
    new_assignee_id = assignee.pk if assignee else None
    if chat.assignee_id == new_assignee_id:
        return chat
    chat.assignee_id = new_assignee_id
    return _chat_changed(chat, ["assignee"], type="chat.assigned")


@transaction.atomic
def chat_status_set(*, chat: Chat, status: str) -> Chat:
    """Move the chat to `status` (open, pending, resolved); resolving also clears its unread count.

    Raise ChatActionError for a status that does not exist.
    """
    if status not in Chat.Status.values:
        raise ChatActionError(f"Unknown chat status {status!r}; use one of {', '.join(Chat.Status.values)}.")
    chat = _chat_locked(chat)
    if chat.status == status:
        return chat
    chat.status = status
    fields = ["status"]
    if status == Chat.Status.RESOLVED and chat.unread_count:
        # A resolved chat has been dealt with: leaving it "unread" would keep a badge nobody clears.
        chat.unread_count = 0
        fields.append("unread_count")
    return _chat_changed(chat, fields, type="chat.resolved" if status == Chat.Status.RESOLVED else "chat.updated")


@transaction.atomic
def chat_mark_read(*, chat: Chat) -> Chat:
    """Set the chat's unread count to zero (an agent opened it); does nothing when already read."""
    chat = _chat_locked(chat)
    if chat.unread_count == 0:
        return chat
    chat.unread_count = 0
    return _chat_changed(chat, ["unread_count"])


def chat_message_touch(*, chat_id: int, message: Message) -> Chat:
    """Move the chat's last message forward for a new message (by WhatsApp's time, never back).

    An inbound message also counts as unread and reopens a resolved chat. Call it inside the
    message's transaction, before inserting the message: the chat row's lock it takes makes a
    chat's messages commit one at a time. Return the chat's new state (not a full row: the fields
    `chat_event_data` needs).
    """
    is_inbound = message.direction == Message.Direction.INBOUND
    with connection.cursor() as cursor:
        # Every expression of an UPDATE reads the row as it was: the CASEs compare the old time.
        # Portable SQL (PostgreSQL, and SQLite in embedded mode): the time is a parameter.
        cursor.execute(
            """
            UPDATE crm_chat SET
                unread_count = unread_count + %s,
                last_message_preview = CASE WHEN last_message_at IS NULL OR last_message_at <= %s
                                            THEN %s ELSE last_message_preview END,
                last_message_at = CASE WHEN last_message_at IS NULL OR last_message_at <= %s
                                       THEN %s ELSE last_message_at END,
                status = CASE WHEN %s AND status = 'resolved' THEN 'open' ELSE status END,
                updated_at = %s
            WHERE id = %s
            RETURNING unread_count, last_message_at, last_message_preview, status, assignee_id
            """,
            [
                1 if is_inbound else 0,
                message.timestamp,
                message_preview(message),
                message.timestamp,
                message.timestamp,
                is_inbound,
                timezone.now(),
                chat_id,
            ],
        )
        unread_count, last_message_at, last_message_preview, status, assignee_id = cursor.fetchone()
    return Chat(
        pk=chat_id,
        unread_count=unread_count,
        last_message_at=last_message_at,
        last_message_preview=last_message_preview,
        status=status,
        assignee_id=assignee_id,
    )
