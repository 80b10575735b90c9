"""Concurrent webhooks against the real PostgreSQL: the database, not luck, keeps one of each."""

import json
import threading

import pytest
from django.db import connection
from django.test import Client

from crm.models import Chat, Contact, ContactIdentity
from messaging.models import Event, Message
from tests.factories import WhatsAppNumberFactory

ROUNDS = 4


def _post_together(number, payloads: list[dict]) -> list[int]:
    barrier = threading.Barrier(len(payloads))
    statuses: list[int] = []

    def post(payload):
        try:
            barrier.wait(timeout=5)
            response = Client().post(
                f"/webhooks/fake/{number.instance_name}/",
                data=json.dumps(payload),
                content_type="application/json",
                headers={"Authorization": f"Bearer {number.webhook_secret}"},
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(payload,)) for payload in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    return statuses


@pytest.mark.django_db(transaction=True)
def test_album_from_a_new_contact_in_concurrent_requests_makes_one_contact_and_one_chat():
    number = WhatsAppNumberFactory()
    for round_ in range(ROUNDS):
        sender = f"+55119876500{round_:02d}"
        album = [
            {
                "event": "message",
                "id": f"album-{round_}-{photo}",
                "from": sender,
                "name": "Rita",
                "text": f"photo {photo}",
            }
            for photo in range(3)
        ]
        assert _post_together(number, album) == [200, 200, 200]
        assert Contact.objects.filter(phone=sender).count() == 1
        assert ContactIdentity.objects.filter(value=sender).count() == 1
        [chat] = Chat.objects.filter(contact__phone=sender)
        assert chat.messages.count() == 3
        assert chat.unread_count == 3
    assert Contact.objects.count() == ROUNDS


@pytest.mark.django_db(transaction=True)
def test_the_same_message_posted_concurrently_is_stored_once():
    number = WhatsAppNumberFactory()
    payload = {"event": "message", "id": "same", "from": "+5511987650099", "text": "hi"}
    assert _post_together(number, [payload] * 4) == [200] * 4
    assert Message.objects.count() == 1
    assert Chat.objects.get().unread_count == 1
    assert Event.objects.filter(type="message.created").count() == 1
    # Cursors stay dense and ordered: each stored change took exactly one.
    assert list(Event.objects.order_by("sequence").values_list("sequence", flat=True)) == [1]
