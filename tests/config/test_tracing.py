"""OpenTelemetry: one trace from the web request through its Celery task to the provider call; off when unset.

Tracing is global to a process (one tracer provider, patched libraries), so each case runs in a
process of its own (tests/config/tracing_probe.py, or a few lines of Python).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from providers.fakes.evolution import FakeEvolutionServer
from tests.factories import ChatFactory, ContactFactory, MembershipFactory
from tests.messaging.outbound_worker import database_url
from tests.messaging.test_outbound import evolution_number

ROOT = Path(__file__).resolve().parents[2]
# Nothing listens there: the cases below export to memory or create no span.
UNUSED_ENDPOINT = "http://127.0.0.1:9"


def python_run(arguments: list[str], *, tracing: bool, **env: str) -> dict:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    if tracing:
        environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = UNUSED_ENDPOINT
    result = subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def evolution():
    server = FakeEvolutionServer(webhook_delay_seconds=0, auto_status=False).start()
    yield server
    server.stop()


@pytest.mark.django_db(transaction=True)
def test_a_send_is_one_trace_from_the_request_through_its_task_to_the_provider(evolution, settings):
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9"  # the fake's connection webhooks go nowhere
    number = evolution_number(evolution)
    membership = MembershipFactory(organization=number.organization)
    contact = ContactFactory(organization=number.organization, phone="+5511987654321")
    chat = ChatFactory(organization=number.organization, number=number, contact=contact)

    outcome = python_run(
        ["-m", "tests.config.tracing_probe", str(chat.pk), str(membership.user.pk)],
        tracing=True,
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        CACHE_KEY_PREFIX=settings.CACHE_KEY_PREFIX,
        ALLOWED_HOSTS="testserver",
        PROVIDER_CONNECT_TIMEOUT="2",
        PROVIDER_READ_TIMEOUT="5",
    )
    assert outcome["status"] == 202
    spans = outcome["spans"]
    by_id = {span["span_id"]: span for span in spans}

    def ancestors(span: dict) -> list[str]:
        names = []
        while span["parent_id"] in by_id:
            span = by_id[span["parent_id"]]
            names.append(span["name"])
        return names

    [server] = [span for span in spans if span["kind"] == "SERVER"]
    assert server["attributes"]["http.route"] == "api/v1/chats/<int:chat_id>/messages/"
    trace_id = server["trace_id"]
    task = "messaging.tasks.outbound.message_deliver"
    [published] = [span for span in spans if span["name"] == f"apply_async/{task}"]
    [run] = [span for span in spans if span["name"] == f"run/{task}"]
    assert (published["kind"], run["kind"]) == ("PRODUCER", "CONSUMER")
    assert published["trace_id"] == run["trace_id"] == trace_id
    # The task's span hangs under the enqueue inside the request, through the message's headers.
    assert run["parent_id"] == published["span_id"]
    assert server["name"] in ancestors(published)

    provider_calls = [span for span in spans if span["attributes"].get("http.url", "").startswith(evolution.url)]
    assert {call["kind"] for call in provider_calls} == {"CLIENT"}
    assert [call["attributes"]["http.method"] for call in provider_calls] == ["POST"]
    assert provider_calls[0]["trace_id"] == trace_id
    assert run["name"] in ancestors(provider_calls[0])
    # The provider got the trace context too (requests sends `traceparent`): its server would join.
    [send] = [request for request in evolution.requests if request.path.startswith("/message/")]
    assert send.header("traceparent").startswith(f"00-{trace_id}-{provider_calls[0]['span_id']}-")
    # SQL statements of the request and of the task, each under its span (a pool's own set-up
    # statements, outside any request or task, are traces of their own).
    statements = [span for span in spans if span["attributes"].get("db.system") == "postgresql"]
    in_trace = [span for span in statements if span["trace_id"] == trace_id]
    assert {server["name"], run["name"]} <= {name for span in in_trace for name in ancestors(span)}


def test_without_the_endpoint_nothing_is_traced_or_even_imported():
    # The Redis client (redis-py 7) imports OpenTelemetry's API and metrics SDK by itself when they
    # are installed, and records nothing unless told to; so the check is on what tracing would load.
    code = """
import json, sys
import config.asgi
import requests
from celery.signals import worker_process_init
from django.conf import settings
from config.tracing import tracing_setup
worker_process_init.send(sender=None)
trace_api = sys.modules.get("opentelemetry.trace")
print(json.dumps({
    "modules": sorted(
        name for name in sys.modules
        if name.startswith(("opentelemetry.instrumentation", "opentelemetry.exporter", "opentelemetry.sdk.trace"))
    ),
    "tracer_provider": repr(getattr(trace_api, "_TRACER_PROVIDER", None)),
    "middleware": [name for name in settings.MIDDLEWARE if "opentelemetry" in name],
    "requests_patched": hasattr(requests.Session.send, "__wrapped__"),
    "enabled": tracing_setup(),
}))
"""
    outcome = python_run(["-c", code], tracing=False, DATABASE_URL=database_url(), REDIS_URL=settings.REDIS_URL)
    assert outcome == {
        "modules": [],
        "tracer_provider": "None",
        "middleware": [],
        "requests_patched": False,
        "enabled": False,
    }


def test_each_worker_process_starts_tracing_with_the_service_name():
    code = """
import json
import config.celery
from celery.signals import worker_process_init
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
before = type(trace.get_tracer_provider()).__name__
worker_process_init.send(sender=None)
print(json.dumps({
    "before": before,
    "service": trace.get_tracer_provider().resource.attributes["service.name"],
    "celery": CeleryInstrumentor().is_instrumented_by_opentelemetry,
    "requests": RequestsInstrumentor().is_instrumented_by_opentelemetry,
}))
"""
    outcome = python_run(
        ["-c", code],
        tracing=True,
        OTEL_SERVICE_NAME="conversa-worker",
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
    )
    assert outcome == {"before": "ProxyTracerProvider", "service": "conversa-worker", "celery": True, "requests": True}
