"""WebSocket rooms through the real ASGI application, session auth and the real Redis channel layer."""

import asyncio
import json
from uuid import uuid4

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.conf import settings as django_settings
from django.test import Client

from config.asgi import application
from crm.models import Membership
from tests.factories import ChatFactory, MembershipFactory, WhatsAppNumberFactory

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 3


@pytest.fixture(autouse=True)
def _own_channel_prefix(settings):
    # Redis pub/sub channels ignore the database number: a prefix keeps parallel runs apart.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [django_settings.REDIS_URL], "prefix": f"test-{uuid4().hex[:12]}"},
        }
    }


class WebsocketCommunicator(ApplicationCommunicator):
    """channels.testing's communicator, minus its package import of daphne (not installed here)."""

    def __init__(self, app, path: str, headers: list):
        scope = {"type": "websocket", "path": path, "query_string": b"", "headers": headers, "subprotocols": []}
        super().__init__(app, scope)

    async def connect(self, timeout=TIMEOUT):
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        return response["type"] == "websocket.accept", response.get("code")

    async def send_to(self, text_data=None, bytes_data=None):
        frame = {"text": text_data} if text_data is not None else {"bytes": bytes_data}
        await self.send_input({"type": "websocket.receive", **frame})

    async def receive_json_from(self, timeout=TIMEOUT):
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code=1000, timeout=TIMEOUT):
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


def session_cookie(user, organization_id=None) -> bytes:
    client = Client()
    client.force_login(user)
    if organization_id is not None:
        session = client.session
        session["organization_id"] = organization_id
        session.save()
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def socket(path: str, cookie: bytes | None = None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers)


async def opened(communicator) -> dict:
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return await communicator.receive_json_from(timeout=TIMEOUT)


async def closed_with(communicator) -> int:
    await communicator.connect(timeout=TIMEOUT)
    output = await communicator.receive_output(timeout=TIMEOUT)
    assert output["type"] == "websocket.close"
    return output["code"]


def post_message(number, message_id: str, text: str = "hi"):
    return Client().post(
        f"/webhooks/fake/{number.instance_name}/",
        data=json.dumps({"event": "message", "id": message_id, "from": "+5511912345678", "text": text}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {number.webhook_secret}"},
    )


def test_anonymous_cannot_join_any_room():
    chat = ChatFactory()

    async def scenario():
        codes = []
        for path in ("/ws/inbox/", f"/ws/chats/{chat.pk}/", f"/ws/numbers/{chat.number_id}/"):
            communicator = socket(path)
            codes.append(await closed_with(communicator))
            await communicator.disconnect()
        return codes

    assert async_to_sync(scenario)() == [4401, 4401, 4401]


def test_member_of_another_organization_cannot_join_its_chat_or_number_room():
    chat = ChatFactory()
    outsider = MembershipFactory()  # organization B

    async def scenario():
        cookie = await sync_to_async(session_cookie)(outsider.user)
        codes = []
        for path in (f"/ws/chats/{chat.pk}/", f"/ws/numbers/{chat.number_id}/", "/ws/chats/999999/"):
            communicator = socket(path, cookie)
            codes.append(await closed_with(communicator))
            await communicator.disconnect()
        return codes

    assert async_to_sync(scenario)() == [4403, 4403, 4403]


def test_inbox_of_organization_b_never_sees_organization_a_events():
    member_a = MembershipFactory()
    member_b = MembershipFactory()
    number_a = WhatsAppNumberFactory(organization=member_a.organization)

    async def scenario():
        inbox_a = socket("/ws/inbox/", await sync_to_async(session_cookie)(member_a.user))
        inbox_b = socket("/ws/inbox/", await sync_to_async(session_cookie)(member_b.user))
        assert (await opened(inbox_a))["room"] == f"org.{member_a.organization_id}"
        assert (await opened(inbox_b))["room"] == f"org.{member_b.organization_id}"
        response = await sync_to_async(post_message)(number_a, "m-a")
        assert response.status_code == 200
        frame = await inbox_a.receive_json_from(timeout=TIMEOUT)
        assert frame["event"]["type"] == "message.created"
        assert frame["event"]["data"]["chat_state"]["unread_count"] == 1
        assert await inbox_a.receive_nothing(timeout=0.3)  # one frame per message, not two
        assert await inbox_b.receive_nothing(timeout=0.3)
        await inbox_a.disconnect()
        await inbox_b.disconnect()

    async_to_sync(scenario)()


def test_inbox_follows_the_organization_chosen_in_the_session():
    membership = MembershipFactory()
    other = MembershipFactory(user=membership.user, role=Membership.Role.ADMIN)

    async def scenario():
        cookie = await sync_to_async(session_cookie)(membership.user, other.organization_id)
        inbox = socket("/ws/inbox/", cookie)
        ready = await opened(inbox)
        await inbox.disconnect()
        return ready["room"]

    assert async_to_sync(scenario)() == f"org.{other.organization_id}"


def test_chat_room_gets_its_messages_as_json():
    membership = MembershipFactory()
    number = WhatsAppNumberFactory(organization=membership.organization)

    async def scenario():
        cookie = await sync_to_async(session_cookie)(membership.user)
        await sync_to_async(post_message)(number, "m-1", "first")
        from crm.models import Chat

        chat = await sync_to_async(Chat.objects.get)()
        room = socket(f"/ws/chats/{chat.pk}/", cookie)
        await opened(room)
        await sync_to_async(post_message)(number, "m-2", "second")
        frame = await room.receive_json_from(timeout=TIMEOUT)
        await room.disconnect()
        return chat.pk, frame

    chat_id, frame = async_to_sync(scenario)()
    assert frame["type"] == "event"
    assert frame["event"]["type"] == "message.created"
    assert frame["event"]["chat"] == chat_id
    assert frame["event"]["data"]["preview"] == "second"
    assert isinstance(frame["event"]["cursor"], int)


def test_ping_gets_pong_and_invalid_frames_get_errors_without_closing():
    membership = MembershipFactory()

    async def scenario():
        inbox = socket("/ws/inbox/", await sync_to_async(session_cookie)(membership.user))
        await opened(inbox)
        replies = []
        for frame in ("not json", json.dumps({"type": "dance"}), json.dumps([1, 2]), "x" * 5000):
            await inbox.send_to(text_data=frame)
            replies.append((await inbox.receive_json_from(timeout=TIMEOUT))["error"]["code"])
        await inbox.send_to(bytes_data=b"\x00")
        replies.append((await inbox.receive_json_from(timeout=TIMEOUT))["error"]["code"])
        await inbox.send_to(text_data=json.dumps({"type": "ping"}))
        replies.append((await inbox.receive_json_from(timeout=TIMEOUT))["type"])
        await inbox.disconnect()
        return replies

    assert async_to_sync(scenario)() == [
        "invalid_json",
        "unknown_type",
        "unknown_type",
        "frame_too_big",
        "binary_frame",
        "pong",
    ]


def test_socket_that_leaves_two_pings_unanswered_is_closed(settings):
    settings.WEBSOCKET_PING_SECONDS = 0.05
    membership = MembershipFactory()

    async def scenario():
        inbox = socket("/ws/inbox/", await sync_to_async(session_cookie)(membership.user))
        await opened(inbox)
        frames = [await inbox.receive_json_from(timeout=TIMEOUT) for _ in range(2)]
        closing = await inbox.receive_output(timeout=TIMEOUT)
        await inbox.disconnect()
        return frames, closing

    frames, closing = async_to_sync(scenario)()
    assert frames == [{"type": "ping"}, {"type": "ping"}]
    assert closing == {"type": "websocket.close", "code": 4408}


def test_socket_that_answers_pings_stays_open(settings):
    settings.WEBSOCKET_PING_SECONDS = 0.05
    membership = MembershipFactory()

    async def scenario():
        inbox = socket("/ws/inbox/", await sync_to_async(session_cookie)(membership.user))
        await opened(inbox)
        for _ in range(4):
            assert await inbox.receive_json_from(timeout=TIMEOUT) == {"type": "ping"}
            await inbox.send_to(text_data=json.dumps({"type": "pong"}))
        await asyncio.sleep(0.01)
        await inbox.send_to(text_data=json.dumps({"type": "ping"}))
        reply = await inbox.receive_json_from(timeout=TIMEOUT)
        while reply == {"type": "ping"}:
            reply = await inbox.receive_json_from(timeout=TIMEOUT)
        await inbox.disconnect()
        return reply

    assert async_to_sync(scenario)() == {"type": "pong"}


def test_live_statistics_count_open_sockets_for_staff_only(client):
    membership = MembershipFactory(user__is_staff=True)
    agent = MembershipFactory(organization=membership.organization)

    async def scenario():
        inbox = socket("/ws/inbox/", await sync_to_async(session_cookie)(membership.user))
        await opened(inbox)
        await sync_to_async(client.force_login)(membership.user)
        during = (await sync_to_async(client.get)("/stats/live/")).json()
        await inbox.disconnect()
        await asyncio.sleep(0.05)
        after = (await sync_to_async(client.get)("/stats/live/")).json()
        return during, after

    during, after = async_to_sync(scenario)()
    assert during["websocket_connections"] == 1
    assert after["websocket_connections"] == 0
    assert set(during) == {"websocket_connections", "messages_in_per_minute", "messages_out_per_minute", "cache"}
    client.force_login(agent.user)
    assert client.get("/stats/live/").status_code == 403
