"""Shared data for the inbox page tests: an agent of organization A with chats, and an outsider of B."""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from crm.models import Chat, Contact, Membership, WhatsAppNumber
from messaging.models import Message
from tests.factories import ChatFactory, MembershipFactory, MessageFactory, WhatsAppNumberFactory


@dataclass
class Workspace:
    agent: Membership
    number: WhatsAppNumber
    chat: Chat
    outsider: Membership
    foreign_chat: Chat


def chat_with_message(*, organization, number=None, text="Hello", minutes_ago=0, **chat_fields) -> Chat:
    """A chat whose last message (inbound) is `text`, `minutes_ago` minutes old, like ingest leaves it."""
    number = number or WhatsAppNumberFactory(organization=organization)
    moment = timezone.now() - timedelta(minutes=minutes_ago)
    chat = ChatFactory(
        organization=organization,
        number=number,
        last_message_at=moment,
        last_message_preview=text[:200],
        **chat_fields,
    )
    MessageFactory(chat=chat, text=text, timestamp=moment)
    return chat


@pytest.fixture
def workspace(db) -> Workspace:
    agent = MembershipFactory(organization__name="Acme Dental")
    number = WhatsAppNumberFactory(organization=agent.organization, name="Reception")
    chat = chat_with_message(
        organization=agent.organization, number=number, text="Oi, tudo bem?", contact__name="Maria Souza"
    )
    outsider = MembershipFactory(organization__name="Beta Bakery")
    foreign_chat = chat_with_message(organization=outsider.organization, text="Secret of B", contact__name="Bob B")
    return Workspace(agent=agent, number=number, chat=chat, outsider=outsider, foreign_chat=foreign_chat)


@pytest.fixture
def agent_client(client, workspace):
    client.force_login(workspace.agent.user)
    return client


def outbound(chat: Chat, *, text: str = "Sent", status: str = Message.Status.SENT, **fields) -> Message:
    return MessageFactory(
        chat=chat, direction=Message.Direction.OUTBOUND, status=status, text=text, provider_message_id=None, **fields
    )


def bulk_chats(*, organization, number, count: int, messages_per_chat: int = 1) -> list[Chat]:
    """`count` chats with their contacts and messages, inserted in a few statements (fast at 1,000s)."""
    now = timezone.now()
    contacts = Contact.objects.bulk_create(
        Contact(organization=organization, name=f"Bulk {index}", phone=f"+551198{index:06d}1") for index in range(count)
    )
    chats = Chat.objects.bulk_create(
        Chat(
            organization=organization,
            number=number,
            contact=contact,
            unread_count=index % 150,
            last_message_at=now - timedelta(seconds=index),
            last_message_preview=f"Preview {index}",
        )
        for index, contact in enumerate(contacts)
    )
    Message.objects.bulk_create(
        Message(
            organization=organization,
            number=number,
            chat=chat,
            direction=Message.Direction.INBOUND,
            status=Message.Status.RECEIVED,
            text=f"Bulk message {index}-{position}",
            timestamp=now - timedelta(seconds=index, milliseconds=position),
        )
        for index, chat in enumerate(chats)
        for position in range(messages_per_chat)
    )
    return chats
