"""The inbox's pages cost a fixed number of queries however many chats and messages there are."""

import re

import pytest
from django.urls import reverse

from crm.models import Chat, ChatNote, QuickReply
from tests.crm.inbox_fixtures import bulk_chats, outbound
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db
CHATS = 1_000


@pytest.fixture
def big_inbox(workspace):
    organization = workspace.agent.organization
    chats = bulk_chats(organization=organization, number=workspace.number, count=CHATS, messages_per_chat=2)
    busy = chats[0]

    for index in range(120):
        outbound(busy, text=f"Reply {index}")
    ChatNote.objects.bulk_create(
        ChatNote(organization=organization, chat=busy, text=f"Note {index}") for index in range(30)
    )
    QuickReply.objects.bulk_create(
        QuickReply(organization=organization, shortcut=f"reply-{index}", text="Hi") for index in range(30)
    )
    for _ in range(10):
        MembershipFactory(organization=organization)
    Chat.objects.filter(organization=organization).update(assignee=workspace.agent)
    return busy


def test_inbox_list_queries_are_bounded(agent_client, big_inbox, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        response = agent_client.get(reverse("crm:inbox"), {"view": "mine", "q": "Bulk"})
    assert response.content.decode().count('class="chat-row') == 50


def test_next_list_page_queries_are_bounded(agent_client, big_inbox, django_assert_max_num_queries):
    first = agent_client.get(reverse("crm:chat-rows")).content.decode()
    after = re.search(r"after=([0-9_]+)", first).group(1)
    with django_assert_max_num_queries(6):
        response = agent_client.get(reverse("crm:chat-rows"), {"after": after})
    assert response.content.decode().count('class="chat-row') == 50


def test_chat_page_queries_are_bounded(agent_client, big_inbox, django_assert_max_num_queries):
    Chat.objects.filter(pk=big_inbox.pk).update(unread_count=5)  # opening it also marks it read
    with django_assert_max_num_queries(20):
        response = agent_client.get(reverse("crm:chat-detail", args=[big_inbox.pk]))
    page = response.content.decode()
    assert page.count('class="message ') == 50
    assert page.count('class="note"') == 20


def test_older_history_queries_are_bounded(agent_client, big_inbox, django_assert_max_num_queries):
    page = agent_client.get(reverse("crm:chat-detail", args=[big_inbox.pk])).content.decode()
    cursor = re.search(r'data-older-cursor="([0-9_]+)"', page).group(1)
    with django_assert_max_num_queries(6):
        response = agent_client.get(reverse("crm:chat-messages", args=[big_inbox.pk]), {"before": cursor})
    assert response.content.decode().count('class="message ') == 50


def test_row_fragments_queries_are_bounded(agent_client, big_inbox, django_assert_max_num_queries):
    message = big_inbox.messages.last()
    with django_assert_max_num_queries(6):
        agent_client.get(reverse("crm:chat-row", args=[big_inbox.pk]))
    with django_assert_max_num_queries(5):
        agent_client.get(reverse("crm:message-row", args=[message.pk]))
