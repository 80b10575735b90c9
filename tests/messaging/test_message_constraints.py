"""Message invariants: no duplicate provider ids or idempotency keys, no message off its chat."""

import pytest
from django.core.exceptions import ValidationError

from messaging.models import Message
from tests.factories import ChatFactory, MessageFactory, WhatsAppNumberFactory
from tests.integrity import refused_by_database

pytestmark = pytest.mark.django_db


def _outbound(chat, **fields):
    return Message.objects.create(
        organization=chat.organization,
        number=chat.number,
        chat=chat,
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.QUEUED,
        text="hello",
        **fields,
    )


def test_duplicate_provider_message_id_on_one_number_is_refused():
    message = MessageFactory()
    with refused_by_database():
        MessageFactory(chat=message.chat, provider_message_id=message.provider_message_id)


def test_duplicate_provider_message_id_is_refused_across_chats_of_one_number():
    message = MessageFactory()
    other_chat = ChatFactory(organization=message.organization, number=message.number)
    with refused_by_database():
        MessageFactory(chat=other_chat, provider_message_id=message.provider_message_id)


def test_same_provider_message_id_on_two_numbers_is_two_messages():
    message = MessageFactory()
    other_chat = ChatFactory(organization=message.organization)
    MessageFactory(chat=other_chat, provider_message_id=message.provider_message_id)
    assert Message.objects.filter(provider_message_id=message.provider_message_id).count() == 2


def test_many_messages_without_provider_id_are_allowed():
    chat = ChatFactory()
    _outbound(chat)
    _outbound(chat)
    assert chat.messages.count() == 2


def test_blank_provider_id_is_refused_so_it_cannot_dodge_uniqueness():
    chat = ChatFactory()
    with refused_by_database():
        _outbound(chat, provider_message_id="")


def test_duplicate_idempotency_key_in_one_organization_is_refused():
    chat = ChatFactory()
    _outbound(chat, idempotency_key="client-key-1")
    other_chat = ChatFactory(organization=chat.organization)
    with refused_by_database():
        _outbound(other_chat, idempotency_key="client-key-1")


def test_same_idempotency_key_in_two_organizations_is_allowed():
    _outbound(ChatFactory(), idempotency_key="client-key-1")
    _outbound(ChatFactory(), idempotency_key="client-key-1")
    assert Message.objects.filter(idempotency_key="client-key-1").count() == 2


def test_message_cannot_claim_another_organization_than_its_chat():
    chat = ChatFactory()
    foreign_chat = ChatFactory()
    with refused_by_database():
        Message.objects.create(
            organization=foreign_chat.organization,
            number=chat.number,
            chat=chat,
            direction=Message.Direction.INBOUND,
            status=Message.Status.RECEIVED,
        )


def test_message_cannot_claim_another_number_than_its_chat():
    chat = ChatFactory()
    other_number = WhatsAppNumberFactory(organization=chat.organization)
    with refused_by_database():
        Message.objects.create(
            organization=chat.organization,
            number=other_number,
            chat=chat,
            direction=Message.Direction.INBOUND,
            status=Message.Status.RECEIVED,
        )


def test_message_on_another_number_is_a_form_error():
    chat = ChatFactory()
    message = Message(
        organization=chat.organization, number=WhatsAppNumberFactory(), chat=chat, direction="in", status="received"
    )
    with pytest.raises(ValidationError):
        message.clean()


@pytest.mark.parametrize(("direction", "status"), [("in", "queued"), ("in", "read"), ("out", "received")])
def test_status_must_fit_the_direction(direction, status):
    chat = ChatFactory()
    with refused_by_database():
        Message.objects.create(
            organization=chat.organization, number=chat.number, chat=chat, direction=direction, status=status
        )


def test_attempts_cannot_exceed_max_attempts():
    message = _outbound(ChatFactory(), max_attempts=3)
    with refused_by_database():
        Message.objects.filter(pk=message.pk).update(attempts=4)


def test_max_attempts_must_allow_one_attempt():
    with refused_by_database():
        _outbound(ChatFactory(), max_attempts=0)
