"""Catch-up: a client that missed pushes asks /events/?after=<cursor> and misses nothing."""

import json
from uuid import uuid4

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings as django_settings
from django.test import Client

from tests.factories import ChatFactory, MembershipFactory, WhatsAppNumberFactory
from tests.messaging.test_consumers import TIMEOUT, opened, post_message, session_cookie, socket


@pytest.fixture(autouse=True)
def _own_channel_prefix(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [django_settings.REDIS_URL], "prefix": f"test-{uuid4().hex[:12]}"},
        }
    }


@pytest.mark.django_db(transaction=True)
def test_client_that_disconnects_while_messages_arrive_gets_them_all_on_reconnect():
    membership = MembershipFactory()
    number = WhatsAppNumberFactory(organization=membership.organization)
    browser = Client()
    browser.force_login(membership.user)

    async def scenario():
        cookie = await sync_to_async(session_cookie)(membership.user)
        inbox = socket("/ws/inbox/", cookie)
        await opened(inbox)
        await sync_to_async(post_message)(number, "live-1", "seen live")
        last_cursor = (await inbox.receive_json_from(timeout=TIMEOUT))["event"]["cursor"]
        await inbox.disconnect()
        for index in range(5):  # arrive while the agent's laptop sleeps
            await sync_to_async(post_message)(number, f"missed-{index}", f"missed {index}")
        inbox = socket("/ws/inbox/", cookie)
        await opened(inbox)
        caught_up = await sync_to_async(browser.get)("/events/", {"after": last_cursor})
        await sync_to_async(post_message)(number, "live-2", "live again")
        live = await inbox.receive_json_from(timeout=TIMEOUT)
        await inbox.disconnect()
        return last_cursor, caught_up.json(), live

    last_cursor, caught_up, live = async_to_sync(scenario)()
    created = [event for event in caught_up["events"] if event["type"] == "message.created"]
    assert [event["data"]["preview"] for event in created] == [f"missed {index}" for index in range(5)]
    cursors = [event["cursor"] for event in caught_up["events"]]
    assert cursors == list(range(last_cursor + 1, last_cursor + 6))
    assert caught_up["cursor"] == cursors[-1]
    assert live["event"]["cursor"] == cursors[-1] + 1  # the live stream continues right after


@pytest.mark.django_db
def test_catch_up_filters_by_chat_and_walls_organizations(client, django_capture_on_commit_callbacks):
    membership = MembershipFactory()
    number = WhatsAppNumberFactory(organization=membership.organization)
    post_message(number, "a-1")
    other = ChatFactory()  # another organization's chat
    client.force_login(membership.user)
    everything = client.get("/events/", {"after": 0}).json()
    assert [event["type"] for event in everything["events"]] == ["message.created"]
    chat_id = everything["events"][0]["chat"]
    assert len(client.get("/events/", {"after": 0, "chat": chat_id}).json()["events"]) == 1
    response = client.get("/events/", {"after": 0, "chat": other.pk})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert client.get("/events/", {"after": "soon"}).status_code == 400
    assert client.get("/events/", {"after": 2}).json() == {"events": [], "cursor": 2, "has_more": False}


@pytest.mark.django_db
def test_catch_up_needs_a_session(client):
    response = client.get("/events/", {"after": 0})
    assert response.status_code == 401
    assert json.loads(response.content)["error"]["code"] == "not_authenticated"
