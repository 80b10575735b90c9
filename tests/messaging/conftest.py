"""Fixtures shared by the health, cleanup and monitoring tests."""

import pytest

from config.celery import app
from providers.fakes.evolution import FakeEvolutionServer
from tests.providers.webhook_sink import WebhookSink

FAKE_EVOLUTION_API_KEY = "fake-evolution-test-key"


@pytest.fixture
def eager_tasks():
    """Run tasks enqueued with .delay() at once, in this process (no worker)."""
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def fake_evolution(settings):
    """A fake Evolution server whose webhooks (a restart's connection updates) go to a sink."""
    sink = WebhookSink()
    settings.PUBLIC_BASE_URL = sink.url
    settings.PROVIDER_CONNECT_TIMEOUT = 0.5
    settings.PROVIDER_READ_TIMEOUT = 0.5
    server = FakeEvolutionServer(api_key=FAKE_EVOLUTION_API_KEY, webhook_delay_seconds=0.0, auto_status=False)
    server.start()
    yield server
    server.stop()
    sink.stop()
