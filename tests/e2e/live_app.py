"""The whole product on loopback for browser tests: uvicorn (HTTP + WebSockets) and a Celery worker.

`LiveApp` runs `python -m tests.e2e.live_app <queue> <port>` (uvicorn serving `config.asgi`, its
tasks published to `<queue>`) beside an `OutboxWorker` consuming that queue, both on the test
database, so a browser sees exactly what `make run` serves. Tests using it need `transactional_db`:
the subprocesses only see committed rows.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import requests
from django.conf import settings

from tests.messaging.outbound_worker import ROOT, OutboxWorker, database_url


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveApp:
    """uvicorn + a Celery worker on a free port; `url` is what the browser opens."""

    def __init__(self, *, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.queue = f"e2e-{uuid.uuid4().hex[:12]}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CACHE_KEY_PREFIX": settings.CACHE_KEY_PREFIX,
            "PUBLIC_BASE_URL": self.url,
            "SERVE_STATIC": "true",
            "LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.worker = OutboxWorker(self.queue, concurrency=1, env={"PUBLIC_BASE_URL": self.url, **(env or {})})
        self.process: subprocess.Popen | None = None

    def start(self, *, timeout: float = 30.0) -> "LiveApp":
        self.worker.start()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.live_app", self.queue, str(self.port)],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the live app exited with {self.process.returncode}")
            try:
                requests.get(f"{self.url}/accounts/login/", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the live app did not answer in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.worker.stop()
        if self.worker.process is not None:
            _process_group_wait(self.worker.process.pid)


def _process_group_wait(pgid: int, *, timeout: float = 10.0) -> None:
    """Wait until every process of the group is gone (pool children hold database connections)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(pgid, signal.SIGKILL)


def main() -> None:
    queue, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import uvicorn

    import config.celery
    from config.celery import app

    app.conf.task_default_queue = queue
    config.celery.queue_routing_enabled = False  # every task on the worker's private queue
    uvicorn.run(
        "config.asgi:application",
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # as config/launcher.py serves it
    )


if __name__ == "__main__":
    main()
