"""Real Celery workers for the outbox tests, each test on its own broker queue.

`python -m tests.messaging.outbound_worker <queue> <concurrency>` runs a prefork worker that both
consumes and publishes (retries, a chat's next message) on `<queue>`, so nothing leaks between tests
sharing one Redis. `OutboxWorker` starts it against the test database and stops it (or SIGKILLs it).
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """Return a URL for the database the tests run on (pytest-django's test_<name>)."""
    params = connection.settings_dict
    user = params.get("USER") or "postgres"
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{params['NAME']}"


@contextmanager
def broker_queue():
    """Publish this process's tasks to a fresh queue for the duration; delete it afterwards."""
    import config.celery
    from config.celery import app

    queue = f"outbox-test-{uuid.uuid4().hex[:12]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    config.celery.queue_routing_enabled = False  # every task of the test on its private queue
    try:
        yield queue
    finally:
        app.conf.task_default_queue = previous
        config.celery.queue_routing_enabled = True
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        client.delete(queue, *client.keys(f"{queue}\x06*"))
        client.close()


class OutboxWorker:
    """One `celery worker` process group on `queue`, reading the test database."""

    def __init__(self, queue: str, *, concurrency: int = 2, env: dict | None = None):
        self.queue = queue
        self.concurrency = concurrency
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            # The test's own Redis prefix: the circuit breaker state is shared with the test process.
            "CACHE_KEY_PREFIX": settings.CACHE_KEY_PREFIX,
            "PUBLIC_BASE_URL": settings.PUBLIC_BASE_URL,
            "MESSAGE_MAX_ATTEMPTS": str(settings.MESSAGE_MAX_ATTEMPTS),
            "OUTBOX_RETRY_BASE_SECONDS": str(settings.OUTBOX_RETRY_BASE_SECONDS),
            "OUTBOX_RETRY_MAX_SECONDS": str(settings.OUTBOX_RETRY_MAX_SECONDS),
            "OUTBOX_STUCK_AFTER_SECONDS": str(settings.OUTBOX_STUCK_AFTER_SECONDS),
            "PROVIDER_BREAKER_FAILURES": str(settings.PROVIDER_BREAKER_FAILURES),
            "PROVIDER_BREAKER_RESET_SECONDS": str(settings.PROVIDER_BREAKER_RESET_SECONDS),
            "PROVIDER_CONNECT_TIMEOUT": str(settings.PROVIDER_CONNECT_TIMEOUT),
            "PROVIDER_READ_TIMEOUT": str(settings.PROVIDER_READ_TIMEOUT),
            "LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> "OutboxWorker":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.messaging.outbound_worker", self.queue, str(self.concurrency)],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,  # its own process group, so kill() takes the pool children too
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once, as a crashed machine would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> "OutboxWorker":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def wait_until(predicate, *, timeout: float = 60.0, interval: float = 0.1) -> bool:
    """Poll `predicate` until it is true or `timeout` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def main() -> None:
    queue, concurrency = sys.argv[1], sys.argv[2]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import config.celery
    from config.celery import app

    app.conf.task_default_queue = queue
    config.celery.queue_routing_enabled = False
    app.worker_main(
        [
            "worker",
            "--queues",
            queue,
            "--concurrency",
            concurrency,
            "--pool",
            "prefork",
            "--loglevel",
            "WARNING",
            "--hostname",
            f"{queue}-{uuid.uuid4().hex[:6]}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


if __name__ == "__main__":
    main()
