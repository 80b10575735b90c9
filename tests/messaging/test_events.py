"""The event log: cursors per organization, pushed after commit, readable after a cursor."""

import asyncio
import contextlib

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from messaging.events import chat_group, event_append, events_after, organization_group
from tests.factories import ChatFactory, OrganizationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _append(organization, **fields):
    with transaction.atomic():
        return event_append(organization_id=organization.pk, type="test.event", data=fields.pop("data", {}), **fields)


def test_cursors_count_up_per_organization():
    first, second = OrganizationFactory(), OrganizationFactory()
    assert [_append(first).sequence for _ in range(3)] == [1, 2, 3]
    assert _append(second).sequence == 1


def test_events_after_a_cursor_are_returned_oldest_first_and_only_for_that_organization():
    organization, other = OrganizationFactory(), OrganizationFactory()
    for index in range(5):
        _append(organization, data={"index": index})
    _append(other)
    frames = events_after(organization_id=organization.pk, after=2)
    assert [frame.cursor for frame in frames] == [3, 4, 5]
    assert [frame.data["index"] for frame in frames] == [2, 3, 4]


async def _pushes_received(groups: list[str], write, count: int) -> list[dict]:
    """Join `groups` on one listening channel, run `write` (sync, in a thread), return `count` pushes.

    The pub/sub layer ties a channel to its event loop, so listening happens in one coroutine.
    """
    layer = get_channel_layer()
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    await sync_to_async(write)()
    pushes = [await asyncio.wait_for(layer.receive(channel), timeout=5) for _ in range(count)]
    for group in groups:
        await layer.group_discard(group, channel)
    return pushes


def test_rolled_back_change_leaves_no_event_and_pushes_nothing():
    organization = OrganizationFactory()

    def fail_then_succeed():
        with contextlib.suppress(RuntimeError), transaction.atomic():
            event_append(organization_id=organization.pk, type="test.event", data={"rolled": "back"})
            raise RuntimeError("the change failed")
        _append(organization, data={"after": "rollback"})

    [pushed] = async_to_sync(_pushes_received)([organization_group(organization.pk)], fail_then_succeed, 1)
    assert pushed["event"]["data"] == {"after": "rollback"}  # the only push is the committed one
    assert [frame.data for frame in events_after(organization_id=organization.pk, after=0)] == [{"after": "rollback"}]


def test_event_is_pushed_to_the_organization_and_chat_rooms_after_commit():
    chat = ChatFactory()
    appended = []

    def write():
        appended.append(_append(chat.organization, chat_id=chat.pk, data={"message": 7}))

    groups = [organization_group(chat.organization_id), chat_group(chat.pk)]
    pushes = async_to_sync(_pushes_received)(groups, write, 2)  # one per room the channel is in
    for pushed in pushes:
        assert pushed["type"] == "event.push"
        assert pushed["event"] == {
            "cursor": appended[0].sequence,
            "type": "test.event",
            "chat": chat.pk,
            "number": None,
            "data": {"message": 7},
        }
