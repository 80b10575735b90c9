"""Statuses move forward only, whatever order providers report them in."""

import pytest

from messaging.events import events_after
from messaging.models import Message
from messaging.services.statuses import message_status_report, status_moves_forward
from tests.factories import ChatFactory, MessageFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("current", "new", "moves"),
    [
        ("queued", "sent", True),
        ("sent", "delivered", True),
        ("delivered", "read", True),
        ("read", "delivered", False),  # read never returns to delivered
        ("delivered", "sent", False),
        ("read", "read", False),  # duplicates change nothing
        ("sent", "failed", True),
        ("delivered", "failed", False),
        ("failed", "sent", False),  # a late "sent" does not undo "failed" (green-api#253)
        ("failed", "delivered", True),  # proof of arrival does
        ("failed", "read", True),
    ],
)
def test_status_moves_forward_only(current, new, moves):
    assert status_moves_forward(current, new) is moves


def _sent_message(**fields) -> Message:
    chat = ChatFactory()
    return MessageFactory(chat=chat, direction="out", status="sent", provider_message_id="wamid.1", **fields)


def test_reports_in_any_order_end_at_the_furthest_status():
    message = _sent_message()
    for status in ["read", "delivered", "sent", "delivered"]:
        message_status_report(number_id=message.number_id, provider_message_id="wamid.1", status=status)
    message.refresh_from_db()
    assert message.status == "read"
    events = events_after(organization_id=message.organization_id, after=0)
    assert [(event.type, event.data["status"]) for event in events] == [("message.status", "read")]


def test_failure_keeps_its_reason_and_a_late_sent_does_not_undo_it():
    message = _sent_message()
    message_status_report(number_id=message.number_id, provider_message_id="wamid.1", status="failed", error="131047")
    message_status_report(number_id=message.number_id, provider_message_id="wamid.1", status="sent")
    message.refresh_from_db()
    assert (message.status, message.error) == ("failed", "131047")


def test_reports_about_unknown_or_inbound_messages_change_nothing():
    inbound = MessageFactory(provider_message_id="wamid.in")
    assert message_status_report(number_id=inbound.number_id, provider_message_id="wamid.in", status="read") is None
    assert message_status_report(number_id=inbound.number_id, provider_message_id="nope", status="read") is None
    inbound.refresh_from_db()
    assert inbound.status == "received"


def test_inbound_and_outbound_messages_make_events_of_one_shape():
    from datetime import UTC, datetime

    from messaging.events import events_after
    from messaging.services.inbound import inbound_events_apply
    from messaging.services.outbound import message_send
    from providers.base import InboundMessage

    chat = ChatFactory()
    message_send(organization=chat.organization, chat=chat, text="out")
    inbound_events_apply(
        number=chat.number,
        events=[
            InboundMessage(
                provider_message_id="in-1",
                chat_id="5511912345678@s.whatsapp.net",
                sender_ids=("5511912345678@s.whatsapp.net",),
                timestamp=datetime(2026, 1, 1, tzinfo=UTC),
                text="in",
            )
        ],
    )
    created = [e for e in events_after(organization_id=chat.organization_id, after=0) if e.type == "message.created"]
    assert [event.data["direction"] for event in created] == ["out", "in"]
    assert set(created[0].data) == set(created[1].data)
