"""A traced process: one API send, its task run by a Celery worker, its provider call; prints the spans as JSON.

    python -m tests.config.tracing_probe <chat id> <user id>

Run with OTEL_EXPORTER_OTLP_ENDPOINT set (tracing on), DATABASE_URL at the test database and
REDIS_URL. Spans go to an in-memory exporter installed through config.tracing.tracing_setup, the
function every process starts with. The request goes through the ASGI handler (as under uvicorn);
the task is published to Redis and run by a real Celery worker consumer in a thread of its own,
which shares no context with the request: the task's span can only join the request's trace
through the task message's headers.
"""

import asyncio
import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from config.tracing import tracing_flush, tracing_setup

exporter = InMemorySpanExporter()
tracing_setup(exporter=exporter)

import config.asgi  # noqa: E402, F401 - the web process's entry point (its own setup call adds nothing)


def spans_as_data() -> list[dict]:
    return [
        {
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": format(span.context.trace_id, "032x"),
            "span_id": format(span.context.span_id, "016x"),
            "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
            "attributes": {key: str(value) for key, value in (span.attributes or {}).items()},
        }
        for span in exporter.get_finished_spans()
    ]


def main() -> None:
    import threading

    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.test import AsyncClient

    from config.celery import app
    from tests.messaging.outbound_worker import broker_queue

    chat_id, user_id = int(sys.argv[1]), int(sys.argv[2])
    client = AsyncClient()
    client.force_login(get_user_model().objects.get(pk=user_id))
    # This thread touches the database no more: the worker thread and the request use their own.
    connections.close_all()
    delivered = threading.Event()
    task_postrun.connect(lambda **kwargs: delivered.set(), weak=False)
    with broker_queue() as queue, start_worker(app, queues=[queue], perform_ping_check=False):
        exporter.clear()  # only what follows: the send
        response = asyncio.run(
            client.post(f"/api/v1/chats/{chat_id}/messages/", {"text": "Traced"}, content_type="application/json")
        )
        delivered.wait(timeout=30)
    tracing_flush()
    print(json.dumps({"status": response.status_code, "spans": spans_as_data()}))


if __name__ == "__main__":
    main()
