"""The organization's event log, and its push to WebSocket rooms after commit.

Every change agents must see live is appended here in the same transaction as the change. After
commit the event is pushed to the channel layer groups `org.<id>` (the inbox) and `chat.<id>` (one
conversation). Pushes are at most once; a client that missed any asks for everything after its
last cursor (`events_after`), so nothing is lost across reconnects or a Redis restart.
"""

import asyncio
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass

from channels.layers import get_channel_layer
from django.db import connection, transaction

from crm.models import WhatsAppNumber
from messaging.models import Event, Message

logger = logging.getLogger(__name__)

# The WebSocket consumers' handler for pushed events is `event_push` (Channels maps "event.push").
PUSH_MESSAGE_TYPE = "event.push"


@dataclass(frozen=True)
class EventFrame:
    """An event as browsers receive it: the cursor, the type, ids and small data."""

    cursor: int
    type: str
    chat: int | None
    number: int | None
    data: dict


def organization_group(organization_id: int) -> str:
    return f"org.{organization_id}"


def chat_group(chat_id: int) -> str:
    return f"chat.{chat_id}"


def number_group(number_id: int) -> str:
    return f"number.{number_id}"


PREVIEW_LENGTH = 200
_PREVIEW_OF_TYPE = {
    "image": "📷 Photo",
    "audio": "🎤 Audio",
    "video": "🎬 Video",
    "document": "📄 Document",
    "sticker": "Sticker",
    "location": "📍 Location",
}


def message_preview(message: Message) -> str:
    """Return what a chat list shows for a message: its text, or what kind of media it is."""
    text = (message.text or "").strip() or _PREVIEW_OF_TYPE.get(message.type, "")
    return text[:PREVIEW_LENGTH]


def message_event_data(message: Message, *, chat=None) -> dict:
    """The small data of a message event, the same for inbound and outbound: ids and a list row.

    With `chat` (its state after the message), `chat_state` carries what the inbox's chat list
    needs, so a new message is one event, one frame per listening socket, not two.
    """
    data = {
        "message": message.pk,
        "direction": message.direction,
        "type": message.type,
        "status": message.status,
        "preview": message_preview(message),
        "timestamp": message.timestamp.isoformat(),
        "scheduled_at": message.scheduled_at.isoformat() if message.scheduled_at else None,
        "media_state": message.media_state,
    }
    if chat is not None:
        data["chat_state"] = chat_event_data(chat)
    return data


def chat_event_data(chat) -> dict:
    """The small data of a `chat.*` event: what a chat list row needs to redraw itself."""
    return {
        "chat": chat.pk,
        "status": chat.status,
        "assignee": chat.assignee_id,
        "unread_count": chat.unread_count,
        "last_message_at": chat.last_message_at.isoformat() if chat.last_message_at else None,
        "last_message_preview": chat.last_message_preview,
    }


def message_status_event(message: Message) -> None:
    """Append a `message.status` event for the message's current status (inside its transaction)."""
    event_append(
        organization_id=message.organization_id,
        type="message.status",
        chat_id=message.chat_id,
        data={"message": message.pk, "status": message.status, "error": message.error},
    )


def number_state_event(number: WhatsAppNumber, *, reason: str, **details) -> None:
    """Append a `number.state` event for the number as it is now, with why and any extra details.

    The one shape of `number.state` events: news from the provider (number_connection_update)
    and changes of ours (a failed call, a silence restart, an archive) alike. Call it under the
    organization's event-log lock, inside the change's transaction.
    """
    event_append(
        organization_id=number.organization_id,
        type="number.state",
        number_id=number.pk,
        data={"number": number.pk, "state": number.state, "phone": number.phone, "reason": reason[:200], **details},
    )


def event_frame(event: Event) -> EventFrame:
    return EventFrame(
        cursor=event.sequence, type=event.type, chat=event.chat_id, number=event.number_id, data=event.payload
    )


def event_log_lock(organization_id: int) -> None:
    """Take the organization's event-log lock now; call it first in a transaction that appends events.

    `event_append` takes this row lock anyway. Taking it before any other row gives every writer of
    an organization one lock order (organization, then usage, chat, message rows), so a send, a
    delivery and a webhook of one chat never deadlock (tests/messaging/test_lock_order.py). Plain
    SQL: SQLite (embedded mode) runs it too, where IMMEDIATE transactions serialize writers anyway.
    """
    with connection.cursor() as cursor:
        cursor.execute("UPDATE crm_organization SET event_sequence = event_sequence WHERE id = %s", [organization_id])


def event_append(
    *, organization_id: int, type: str, data: dict, chat_id: int | None = None, number_id: int | None = None
) -> Event:
    """Append an event to the organization's log and push it once the transaction commits.

    Must run inside the transaction that makes the change. The cursor is taken by incrementing
    the organization's counter, which holds that row's lock until commit: events of one
    organization commit in cursor order, so catching up by cursor never skips one.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE crm_organization SET event_sequence = event_sequence + 1 WHERE id = %s RETURNING event_sequence",
            [organization_id],
        )
        (sequence,) = cursor.fetchone()
    event = Event.objects.create(
        organization_id=organization_id,
        sequence=sequence,
        type=type,
        chat_id=chat_id,
        number_id=number_id,
        payload=data,
    )
    frame = event_frame(event)
    transaction.on_commit(lambda: event_push(organization_id, frame))
    return event


def event_push(organization_id: int, frame: EventFrame) -> None:
    """Hand a committed event to this process's push loop; returns at once, never raises.

    Pushes are at most once: a failure only costs the client a catch-up, so it is logged.
    """
    groups = [organization_group(organization_id)]
    if frame.chat is not None:
        groups.append(chat_group(frame.chat))
    if frame.number is not None:
        groups.append(number_group(frame.number))
    event = asdict(frame)
    # Serialized once here, not once per listening socket: a busy inbox has many listeners.
    text = json.dumps({"type": "event", "event": event}, separators=(",", ":"))
    _pusher().submit(groups, {"type": PUSH_MESSAGE_TYPE, "event": event, "text": text})


class _Pusher:
    """One event loop thread per process that sends pushes in order over one channel layer connection.

    `async_to_sync(group_send)` from sync code (webhook views, Celery tasks) would start a new
    event loop per call, and the Redis pub/sub layer opens a connection per loop: that cost ~15 ms
    a push and held the webhook's answer. Here the caller only enqueues; a single consumer
    coroutine sends in submission order, so a browser sees a chat's events in cursor order.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue | None = None
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), name="event-push", daemon=True).start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue()
        self.loop.call_soon(ready.set)
        self.loop.run_until_complete(self._send_forever())

    async def _send_forever(self) -> None:
        while True:
            groups, message = await self.queue.get()
            # Looked up per push (a dict lookup): CHANNEL_LAYERS may change, as tests do.
            layer = get_channel_layer()
            for group in groups:
                try:
                    await layer.group_send(group, message)
                except Exception:
                    event = message["event"]
                    logger.warning(
                        "event %s #%s not pushed to %s", event["type"], event["cursor"], group, exc_info=True
                    )

    def submit(self, groups: list[str], message: dict) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (groups, message))


_pusher_instance: _Pusher | None = None
_pusher_lock = threading.Lock()


def _pusher() -> _Pusher:
    global _pusher_instance
    with _pusher_lock:
        # A forked process (Celery prefork) inherits the object but not the thread: start anew.
        if _pusher_instance is None or _pusher_instance.pid != os.getpid():
            _pusher_instance = _Pusher()
        return _pusher_instance


def events_after(*, organization_id: int, after: int, limit: int = 500, chat_id: int | None = None) -> list[EventFrame]:
    """Return the organization's events with a cursor above `after`, oldest first."""
    events = Event.objects.filter(organization_id=organization_id, sequence__gt=after)
    if chat_id is not None:
        events = events.filter(chat_id=chat_id)
    return [event_frame(event) for event in events.order_by("sequence")[:limit]]
