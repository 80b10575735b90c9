"""Embedded mode (`make run` with nothing configured) runs the same outbox and ingest code on SQLite."""

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def test_send_deliver_sweep_and_ingest_work_on_sqlite(tmp_path):
    environment = {
        **os.environ,
        "DATABASE_URL": "",  # empty means SQLite under the var dir
        "CONVERSA_VAR_DIR": str(tmp_path / "var"),
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": settings.CACHE_KEY_PREFIX,
    }
    result = subprocess.run(
        [sys.executable, "-m", "tests.messaging.embedded_probe"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {
        "same_message_on_replay": True,
        "delivered": ["sent", "sent"],
        "swept": [],
        "webhook_statuses": [200, 200],
        "inbound_stored": 1,
    }
