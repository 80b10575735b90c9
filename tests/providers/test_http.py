"""provider_request against a real HTTP server on loopback: every failure becomes the right ProviderError."""

import socket
import time

import pytest

from providers.base import ProviderError, ProviderTarget
from providers.fakes.server import FakeProviderServer, FakeResponse
from providers.http import provider_request, response_json, retry_after_seconds, url_redact


@pytest.fixture
def server():
    fake = FakeProviderServer().start()
    fake.route("GET", r"/ok", lambda request: FakeResponse.json(200, {"ok": True}))
    fake.route("GET", r"/missing", lambda request: FakeResponse.json(404, {"error": "no such thing"}))
    fake.route("GET", r"/html", lambda request: FakeResponse(200, b"<html>", "text/html"))
    yield fake
    fake.stop()


def _target(key: str = "test") -> ProviderTarget:
    return ProviderTarget(provider="fake", instance_name="i", breaker_key=key)


def test_success_returns_the_response(server):
    response = provider_request(_target(), "GET", server.url + "/ok")
    assert response_json(response) == {"ok": True}


def test_4xx_is_permanent_and_keeps_the_body(server):
    with pytest.raises(ProviderError) as error:
        provider_request(_target(), "GET", server.url + "/missing")
    assert error.value.permanent
    assert error.value.status_code == 404
    assert "no such thing" in error.value.body


def test_5xx_is_temporary(server):
    server.fail_next(1, 502)
    with pytest.raises(ProviderError) as error:
        provider_request(_target(), "GET", server.url + "/ok")
    assert not error.value.permanent
    assert error.value.status_code == 502


def test_429_is_temporary_with_its_retry_after(server):
    server.faults_set(rate_limited_for=1, retry_after_seconds=7)
    with pytest.raises(ProviderError) as error:
        provider_request(_target(), "GET", server.url + "/ok")
    assert (error.value.permanent, error.value.status_code, error.value.retry_after) == (False, 429, 7.0)


def test_retry_after_may_be_an_http_date():
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: retry now
    assert retry_after_seconds("garbage") is None
    assert retry_after_seconds("12") == 12.0


def test_hanging_provider_times_out_as_temporary(server):
    server.faults_set(hang=True)
    started = time.monotonic()
    with pytest.raises(ProviderError) as error:
        provider_request(_target(), "GET", server.url + "/ok")
    server.faults_set(hang=False)
    assert not error.value.permanent
    assert "timed out" in error.value.message
    assert time.monotonic() - started < 5


def test_refused_connection_is_temporary():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ProviderError) as error:
        provider_request(_target(), "GET", f"http://127.0.0.1:{port}/ok")
    assert not error.value.permanent
    assert "could not connect" in error.value.message


def test_body_that_is_not_json_is_a_temporary_error(server):
    response = provider_request(_target(), "GET", server.url + "/html")
    with pytest.raises(ProviderError) as error:
        response_json(response)
    assert not error.value.permanent


def test_green_api_token_never_shows_in_urls_we_log():
    url = "https://7105.api.greenapi.com/waInstance1101234567/sendMessage/d75b3a66374942c5b3c019c698abc2067e151558acbd412345"
    assert "d75b3a66374942c5" not in url_redact(url)
    assert url_redact(url).endswith("/waInstance1101234567/sendMessage/***")


def test_error_messages_do_not_carry_the_token(server):
    token = "secret-token-123456"
    with pytest.raises(ProviderError) as error:
        provider_request(_target(), "GET", f"{server.url}/waInstance1/sendMessage/{token}")
    assert token not in error.value.message
