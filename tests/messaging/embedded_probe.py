"""Run by test_embedded_sqlite in a fresh process on SQLite: send, deliver, sweep and ingest once.

Prints one JSON line with what happened. Usage: python -m tests.messaging.embedded_probe
"""

import json
import os

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from crm.models import Chat
    from messaging.demo import demo_workspace_ensure
    from messaging.models import Message
    from messaging.services.outbound import message_deliver, message_send, outbox_sweep

    call_command("migrate", verbosity=0)
    workspace = demo_workspace_ensure()
    chat = Chat.objects.filter(organization=workspace.organization).first()
    first, _ = message_send(organization=workspace.organization, chat=chat, text="hi", idempotency_key="k1")
    replay, replay_created = message_send(
        organization=workspace.organization, chat=chat, text="hi", idempotency_key="k1"
    )
    outcome = message_deliver(message_id=first.pk)
    first.refresh_from_db()
    number = chat.number
    body = json.dumps({"event": "message", "id": "in-1", "from": "+5511912345678", "text": "Oi"})
    client = Client(HTTP_HOST="127.0.0.1")
    statuses = [
        client.post(
            f"/webhooks/fake/{number.instance_name}/",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {number.webhook_secret}",
        ).status_code
        for _ in range(2)
    ]
    print(
        json.dumps(
            {
                "same_message_on_replay": replay.pk == first.pk and not replay_created,
                "delivered": (outcome.status, first.status),
                "swept": outbox_sweep(),
                "webhook_statuses": statuses,
                "inbound_stored": Message.objects.filter(provider_message_id="in-1").count(),
            }
        )
    )


if __name__ == "__main__":
    main()
