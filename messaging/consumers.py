"""WebSocket rooms: an organization's inbox, one conversation, one number's QR and state.

Each consumer authenticates (session, via AuthMiddlewareStack), authorizes with one small selector,
and only then joins its group; it forwards `event.push` messages as JSON and nothing else. The
refusal is sent as a close code after the handshake (4401 not signed in, 4403 not yours), because
a browser never sees the code of a handshake refused outright.

Pushes are at most once; a client that reconnects asks GET /events/?after=<cursor> for what it
missed. Keepalive: the client may send {"type": "ping"} (answered {"type": "pong"}); the server
pings every WEBSOCKET_PING_SECONDS and closes (4408) a socket that left two pings unanswered,
which also frees the group membership of a socket that died without a goodbye.
"""

import asyncio
import contextlib
import json
import logging
import time

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from messaging.events import PUSH_MESSAGE_TYPE, chat_group, number_group, organization_group
from messaging.selectors import (
    chat_organization_for_member,
    number_organization_for_member,
    organization_id_for_socket,
)
from messaging.views import redis_client, stats_key

logger = logging.getLogger(__name__)

CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_UNRESPONSIVE = 4408
MAX_FRAME_BYTES = 4096
MISSED_PINGS_BEFORE_CLOSE = 2


def _socket_seen(channel_name: str) -> None:
    redis_client().zadd(stats_key("websockets"), {channel_name: time.time()})


def _socket_gone(channel_name: str) -> None:
    redis_client().zrem(stats_key("websockets"), channel_name)


class RoomConsumer(AsyncWebsocketConsumer):
    """A socket joined to one group after its user was authorized for it."""

    room: str | None = None
    _pinger: asyncio.Task | None = None

    async def room_for(self, user) -> str | None:
        """Return the group this user may join on this URL, or None."""
        raise NotImplementedError

    async def connect(self):
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_AUTHENTICATED)
            return
        room = await self.room_for(user)
        if room is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.room = room
        await self.channel_layer.group_add(room, self.channel_name)
        self.unanswered_pings = 0
        await self._stats(_socket_seen)
        self._pinger = asyncio.create_task(self._ping_loop())
        await self.send_json({"type": "ready", "room": room})

    async def disconnect(self, code):
        if self._pinger is not None:
            self._pinger.cancel()
        if self.room is not None:
            await self.channel_layer.group_discard(self.room, self.channel_name)
            await self._stats(_socket_gone)

    async def receive(self, text_data=None, bytes_data=None):
        if bytes_data is not None or text_data is None:
            await self._error("binary_frame", "Send JSON text frames.")
            return
        if len(text_data.encode()) > MAX_FRAME_BYTES:
            await self._error("frame_too_big", f"Frames are limited to {MAX_FRAME_BYTES} bytes.")
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self._error("invalid_json", "The frame is not JSON.")
            return
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "ping":
            await self._alive()
            await self.send_json({"type": "pong"})
        elif kind == "pong":
            await self._alive()
        else:
            await self._error("unknown_type", 'Frames are {"type": "ping"} or {"type": "pong"}.')

    async def dispatch(self, message):
        # Channels closes stale database connections before every handler, through the one sync
        # thread that also runs the HTTP views: for every pushed frame on every socket, queued
        # behind webhook ingest (py-spy: a sixth of the web process under bench/inbound.py). A push
        # touches no database, so it goes straight to its handler.
        if message["type"] == PUSH_MESSAGE_TYPE:
            await self.event_push(message)
            return
        await super().dispatch(message)

    async def event_push(self, message):
        # The pusher serialized the frame once for every socket in the room (messaging.events).
        text = message.get("text")
        if text is None:
            await self.send_json({"type": "event", "event": message["event"]})
        else:
            await self.send(text_data=text)

    async def send_json(self, payload: dict) -> None:
        await self.send(text_data=json.dumps(payload, separators=(",", ":")))

    async def _error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "error": {"code": code, "message": message, "details": {}}})

    async def _alive(self) -> None:
        if self.room is None:
            return
        self.unanswered_pings = 0
        await self._stats(_socket_seen)

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(settings.WEBSOCKET_PING_SECONDS)
            if self.unanswered_pings >= MISSED_PINGS_BEFORE_CLOSE:
                await self.close(code=CLOSE_UNRESPONSIVE)
                return
            self.unanswered_pings += 1
            await self.send_json({"type": "ping"})

    async def _stats(self, change) -> None:
        # Statistics only: a Redis hiccup must never cost an agent their socket.
        with contextlib.suppress(Exception):
            await sync_to_async(change, thread_sensitive=False)(self.channel_name)


class InboxConsumer(RoomConsumer):
    """/ws/inbox/: everything of the organization the user works in now (their session's choice)."""

    async def room_for(self, user) -> str | None:
        organization_id = await database_sync_to_async(organization_id_for_socket)(
            user=user, session=self.scope.get("session") or {}
        )
        return organization_group(organization_id) if organization_id else None


class ChatConsumer(RoomConsumer):
    """/ws/chats/<chat_id>/: one conversation's messages and statuses, for members of its organization."""

    async def room_for(self, user) -> str | None:
        chat_id = int(self.scope["url_route"]["kwargs"]["chat_id"])
        organization_id = await database_sync_to_async(chat_organization_for_member)(user=user, chat_id=chat_id)
        return chat_group(chat_id) if organization_id else None


class NumberConsumer(RoomConsumer):
    """/ws/numbers/<number_id>/: a number's QR codes and connection state, for its page."""

    async def room_for(self, user) -> str | None:
        number_id = int(self.scope["url_route"]["kwargs"]["number_id"])
        organization_id = await database_sync_to_async(number_organization_for_member)(user=user, number_id=number_id)
        return number_group(number_id) if organization_id else None
