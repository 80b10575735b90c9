"""Run by test_embedded_sqlite in a fresh process on SQLite: send, deliver, sweep and ingest once.

Prints one JSON line with what happened. Usage: python -m tests.messaging.embedded_probe
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]


def probe_run(module: str, var_dir: Path) -> dict:
    """From a test: run `python -m <module>` on a fresh SQLite under `var_dir`; return its last JSON line."""
    from django.conf import settings

    environment = {
        **os.environ,
        "DATABASE_URL": "",  # empty means SQLite under the var dir
        "CONVERSA_VAR_DIR": str(var_dir),
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": settings.CACHE_KEY_PREFIX,
    }
    result = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def sqlite_workspace():
    """In a probe process: set Django up, migrate the SQLite database and return the demo workspace."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command

    from messaging.demo import demo_workspace_ensure

    call_command("migrate", verbosity=0)
    return demo_workspace_ensure()


def main() -> None:
    workspace = sqlite_workspace()
    from django.test import Client

    from crm.models import Chat
    from messaging.models import Message
    from messaging.services.outbound import message_deliver, message_send, outbox_sweep

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
