"""The circuit breaker per provider server: opens on repeated temporary failures, shared across processes."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from providers.base import ProviderError, ProviderTarget
from providers.breaker import breaker_state
from providers.fakes.server import FakeProviderServer, FakeResponse
from providers.http import provider_request

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    fake = FakeProviderServer().start()
    fake.route("GET", r"/ok", lambda request: FakeResponse.json(200, {"ok": True}))
    fake.route("GET", r"/bad-number", lambda request: FakeResponse.json(400, {"error": "not on WhatsApp"}))
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _small_breaker(settings):
    settings.PROVIDER_BREAKER_FAILURES = 3
    settings.PROVIDER_BREAKER_RESET_SECONDS = 1


def _call(url: str, key: str = "server-1"):
    return provider_request(ProviderTarget(provider="fake", instance_name="i", breaker_key=key), "GET", url)


def _failures(url: str, count: int, key: str = "server-1") -> list[ProviderError]:
    errors = []
    for _ in range(count):
        with pytest.raises(ProviderError) as error:
            _call(url, key)
        errors.append(error.value)
    return errors


def _probe_in_another_process(key: str, url: str, *, reset_seconds: int) -> str:
    """Call `url` once through the breaker from a fresh process that waits `reset_seconds` to retry."""
    environment = {
        **os.environ,
        "CACHE_KEY_PREFIX": settings.CACHE_KEY_PREFIX,
        "REDIS_URL": settings.REDIS_URL,
        "PROVIDER_BREAKER_FAILURES": str(settings.PROVIDER_BREAKER_FAILURES),
        "PROVIDER_BREAKER_RESET_SECONDS": str(reset_seconds),
    }
    result = subprocess.run(
        [sys.executable, "-m", "tests.providers.breaker_probe", key, url],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def test_repeated_temporary_failures_open_the_circuit_and_stop_calls(server):
    server.fail_next(3, 503)
    errors = _failures(server.url + "/ok", 3)
    assert [error.status_code for error in errors] == [503, 503, 503]  # the tripping error is itself
    calls_before = len(server.requests)

    refused = _failures(server.url + "/ok", 1)[0]

    assert refused.circuit_open
    assert not refused.permanent
    assert len(server.requests) == calls_before  # the server was not called at all
    assert breaker_state("server-1") == "open"


def test_permanent_errors_do_not_open_the_circuit(server):
    _failures(server.url + "/bad-number", 5)
    assert breaker_state("server-1") == "closed"
    assert _call(server.url + "/ok").status_code == 200


def test_circuits_are_per_server(server):
    server.fail_next(3, 503)
    _failures(server.url + "/ok", 3, key="server-1")
    assert _call(server.url + "/ok", key="server-2").status_code == 200


def test_open_circuit_is_seen_by_another_process_and_closes_after_a_good_trial(server):
    server.fail_next(3, 503)
    _failures(server.url + "/ok", 3)
    calls_before = len(server.requests)

    # A second worker process finds the circuit open and does not call the dead server. (Its own
    # cool-down is long, so the time it takes to start cannot let a trial call through.)
    assert _probe_in_another_process("server-1", server.url + "/ok", reset_seconds=600) == "circuit-open open"
    assert len(server.requests) == calls_before

    # Once its cool-down is over, the other process makes the trial call; it succeeds and closes
    # the circuit for everyone, this process included.
    assert _probe_in_another_process("server-1", server.url + "/ok", reset_seconds=0) == "ok closed"
    assert breaker_state("server-1") == "closed"
    assert _call(server.url + "/ok").status_code == 200


def test_failed_trial_opens_the_circuit_again(server):
    server.fail_next(4, 503)
    _failures(server.url + "/ok", 3)
    time.sleep(settings.PROVIDER_BREAKER_RESET_SECONDS + 0.2)
    trial = _failures(server.url + "/ok", 1)[0]
    assert trial.status_code == 503
    assert breaker_state("server-1") == "open"
