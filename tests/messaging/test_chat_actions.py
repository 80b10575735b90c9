"""Assign, status and read: the chat actions shared by the inbox and the API."""

import pytest

from crm.models import Chat
from messaging.models import Event
from messaging.services.chats import ChatActionError, chat_assign, chat_mark_read, chat_status_set
from tests.factories import ChatFactory, MembershipFactory

pytestmark = pytest.mark.django_db


def test_assign_records_the_assignee_and_appends_an_event():
    chat = ChatFactory()
    agent = MembershipFactory(organization=chat.organization)
    chat_assign(chat=chat, assignee=agent)
    chat.refresh_from_db()
    assert chat.assignee == agent
    event = Event.objects.get(chat=chat)
    assert (event.type, event.payload["assignee"]) == ("chat.assigned", agent.pk)


def test_unassign_clears_the_assignee():
    chat = ChatFactory()
    chat_assign(chat=chat, assignee=MembershipFactory(organization=chat.organization))
    chat_assign(chat=chat, assignee=None)
    chat.refresh_from_db()
    assert chat.assignee is None
    assert Event.objects.filter(chat=chat).count() == 2


def test_assigning_a_member_of_another_organization_is_refused():
    chat = ChatFactory()
    outsider = MembershipFactory()
    with pytest.raises(ChatActionError):
        chat_assign(chat=chat, assignee=outsider)
    chat.refresh_from_db()
    assert chat.assignee is None
    assert not Event.objects.exists()


def test_resolving_clears_unread_and_reopening_keeps_history():
    chat = ChatFactory(unread_count=4)
    chat_status_set(chat=chat, status=Chat.Status.RESOLVED)
    chat.refresh_from_db()
    assert (chat.status, chat.unread_count) == ("resolved", 0)
    chat_status_set(chat=chat, status=Chat.Status.OPEN)
    chat.refresh_from_db()
    assert chat.status == "open"
    assert list(Event.objects.filter(chat=chat).values_list("type", flat=True)) == ["chat.resolved", "chat.updated"]


def test_unknown_status_is_refused_and_nothing_changes():
    chat = ChatFactory()
    with pytest.raises(ChatActionError):
        chat_status_set(chat=chat, status="archived")
    chat.refresh_from_db()
    assert chat.status == "open"


def test_a_change_to_the_same_value_appends_no_event():
    chat = ChatFactory()
    chat_status_set(chat=chat, status=Chat.Status.OPEN)
    chat_mark_read(chat=chat)
    assert not Event.objects.exists()


def test_mark_read_zeroes_unread_and_tells_the_inbox():
    chat = ChatFactory(unread_count=7)
    chat_mark_read(chat=chat)
    chat.refresh_from_db()
    assert chat.unread_count == 0
    assert Event.objects.get(chat=chat).payload["unread_count"] == 0
