"""Production mode passes Django's deploy checks; the load balancers' health endpoint tells the truth."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def manage(*arguments: str, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key not in {"SECRET_KEY", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_mode_passes_check_deploy():
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING",
        PRODUCTION="true", SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="crm.example.com",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_without_production_mode_check_deploy_warns():
    # The test above can fail: the embedded defaults do not pass, and must not pretend to.
    result = manage("check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode != 0
    assert "SECURE_SSL_REDIRECT" in result.stdout + result.stderr


def test_production_mode_refuses_a_generated_secret_key():
    result = manage("check", PRODUCTION="true", ALLOWED_HOSTS="crm.example.com")
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr


@pytest.mark.django_db
def test_health_is_ok_when_database_and_redis_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_health_fails_when_redis_is_down(client):
    from django.test import override_settings

    with socket_closed() as port, override_settings(REDIS_URL=f"redis://127.0.0.1:{port}/0"):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "redis": "failed"}}


def socket_closed():
    """A port nothing listens on, for as long as the block runs."""
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        yield port

    return closed()
