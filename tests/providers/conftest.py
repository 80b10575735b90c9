import pytest

from tests.providers.webhook_sink import WebhookSink


@pytest.fixture
def webhook_sink():
    sink = WebhookSink()
    yield sink
    sink.stop()


@pytest.fixture(autouse=True)
def _fast_provider_timeouts(settings):
    # Timeouts short enough that a hanging fake fails a test in about a second, not fifteen.
    settings.PROVIDER_CONNECT_TIMEOUT = 1.0
    settings.PROVIDER_READ_TIMEOUT = 1.0
