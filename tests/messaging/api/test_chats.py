"""Chats over the API: filters, keyset pages, assign, resolve, reopen, mark read (with their events)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from crm.models import Chat
from messaging.models import Event
from tests.factories import ChatFactory, WhatsAppNumberFactory
from tests.messaging.api.conftest import assert_error_shape

CHATS = "/api/v1/chats/"


def ids(response) -> list[int]:
    return [chat["id"] for chat in response.json()["results"]]


@pytest.fixture
def chats(org_a, member_a):
    organization = org_a.organization
    other_number = WhatsAppNumberFactory(organization=organization)
    return {
        "open_unread": ChatFactory(organization=organization, unread_count=3),
        "pending_assigned": ChatFactory(organization=organization, status="pending", assignee=member_a),
        "resolved": ChatFactory(organization=organization, status="resolved", number=other_number),
    }


def test_filters(api, chats, member_a):
    everything = {chat.pk for chat in chats.values()}
    assert set(ids(api.get(CHATS))) == everything
    assert ids(api.get(CHATS, {"status": "pending"})) == [chats["pending_assigned"].pk]
    assert ids(api.get(CHATS, {"unread": "true"})) == [chats["open_unread"].pk]
    assert set(ids(api.get(CHATS, {"unread": "false"}))) == everything - {chats["open_unread"].pk}
    assert ids(api.get(CHATS, {"assignee": member_a.pk})) == [chats["pending_assigned"].pk]
    assert set(ids(api.get(CHATS, {"assignee": "none"}))) == everything - {chats["pending_assigned"].pk}
    assert ids(api.get(CHATS, {"number": chats["resolved"].number_id})) == [chats["resolved"].pk]
    Chat.objects.filter(pk=chats["resolved"].pk).update(updated_at=timezone.now() - timedelta(days=2))
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert set(ids(api.get(CHATS, {"updated_since": since}))) == everything - {chats["resolved"].pk}


@pytest.mark.parametrize(
    "params",
    [{"status": "closed"}, {"assignee": "me"}, {"unread": "maybe"}, {"updated_since": "yesterday"}, {"cursor": "!!"}],
)
def test_bad_filters_are_400(api, chats, params):
    assert_error_shape(api.get(CHATS, params), 400)


def test_pages_by_keyset_cursor_see_every_chat_once(api, org_a):
    made = [ChatFactory(organization=org_a.organization).pk for _ in range(7)]
    seen, cursor = [], None
    while True:
        body = api.get(CHATS, {"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [chat["id"] for chat in body["results"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == sorted(made, reverse=True)


def test_assign_resolve_reopen_read_go_through_the_services(api, chats, member_a):
    chat = chats["open_unread"]
    assigned = api.post(reverse("api:chat-assign", args=[chat.pk]), {"assignee": member_a.pk}, format="json")
    assert (assigned.status_code, assigned.json()["assignee"]) == (200, member_a.pk)
    read = api.post(reverse("api:chat-read", args=[chat.pk]))
    assert read.json()["unread_count"] == 0
    resolved = api.post(reverse("api:chat-resolve", args=[chat.pk]))
    assert resolved.json()["status"] == "resolved"
    reopened = api.post(reverse("api:chat-reopen", args=[chat.pk]))
    assert reopened.json()["status"] == "open"
    unassigned = api.post(reverse("api:chat-assign", args=[chat.pk]), {"assignee": None}, format="json")
    assert unassigned.json()["assignee"] is None
    types = list(Event.objects.filter(chat=chat).order_by("sequence").values_list("type", flat=True))
    assert types == ["chat.assigned", "chat.updated", "chat.resolved", "chat.updated", "chat.assigned"]


@pytest.mark.parametrize("body", [{}, {"assignee": "x"}, {"assignee": 0}, {"assignee": 99999999}])
def test_bad_assign_bodies_are_400(api, chats, body):
    chat = chats["open_unread"]
    assert_error_shape(api.post(reverse("api:chat-assign", args=[chat.pk]), body, format="json"), 400, "invalid")
    assert Chat.objects.get(pk=chat.pk).assignee_id is None


def test_an_agents_session_may_work_chats(client, chats, member_a):
    client.force_login(member_a.user)
    response = client.post(reverse("api:chat-resolve", args=[chats["open_unread"].pk]))
    assert response.status_code == 200
