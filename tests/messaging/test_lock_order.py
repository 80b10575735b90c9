"""Sends, deliveries and webhooks of one chat running at once never deadlock.

Every transaction that appends to the event log takes the organization's lock first, so two
writers of one organization always lock rows in the same order.
"""

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from messaging.services.inbound import inbound_events_apply
from messaging.services.outbound import message_send
from messaging.services.statuses import message_status_report
from providers.base import InboundMessage, StatusUpdate
from tests.factories import ChatFactory, ContactIdentityFactory, MessageFactory

pytestmark = pytest.mark.django_db(transaction=True)
ROUNDS = 40


def _run_together(*workers) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(workers))

    def run(work):
        try:
            start.wait()
            for round_number in range(ROUNDS):
                work(round_number)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_sends_and_inbound_messages_of_one_chat_at_once_do_not_deadlock():
    chat = ChatFactory(contact__phone="+5511912345678")
    ContactIdentityFactory(contact=chat.contact)  # so inbound messages match this chat's contact

    def send(round_number):
        message_send(organization=chat.organization, chat=chat, text=f"out {round_number}")

    def receive(round_number):
        event = InboundMessage(
            provider_message_id=f"in-{round_number}",
            chat_id="5511912345678@s.whatsapp.net",
            sender_ids=("5511912345678@s.whatsapp.net",),
            timestamp=datetime.now(tz=UTC),
            text=f"in {round_number}",
        )
        with transaction.atomic():
            inbound_events_apply(number=chat.number, events=[event])

    assert _run_together(send, receive) == []
    assert chat.messages.count() == 2 * ROUNDS


def test_status_reports_and_sends_of_one_chat_at_once_do_not_deadlock():
    chat = ChatFactory()
    sent = [
        MessageFactory(chat=chat, direction="out", status="sent", provider_message_id=f"wamid.{index}")
        for index in range(ROUNDS)
    ]

    def report(round_number):
        with transaction.atomic():
            inbound_events_apply(
                number=chat.number,
                events=[StatusUpdate(f"wamid.{round_number}", "delivered", datetime.now(tz=UTC))],
            )

    def report_read(round_number):
        message_status_report(number_id=chat.number_id, provider_message_id=f"wamid.{round_number}", status="read")

    def send(round_number):
        message_send(organization=chat.organization, chat=chat, text=f"out {round_number}")

    assert _run_together(report, report_read, send) == []
    assert {message.status for message in chat.messages.filter(pk__in=[m.pk for m in sent])} == {"read"}
