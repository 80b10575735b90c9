"""Test-wide setup: the real PostgreSQL and Redis must be there; nothing is skipped without them."""

import socket
from urllib.parse import urlsplit

import pytest
from django.conf import settings


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session):
    database = settings.DATABASES["default"]
    missing = []
    if database["ENGINE"] != "django.db.backends.postgresql":
        missing.append(f"PostgreSQL (DATABASE_URL points at {database['ENGINE']})")
    elif not _reachable(database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432)):
        missing.append(f"PostgreSQL at {database.get('HOST')}:{database.get('PORT')}")
    redis = urlsplit(settings.REDIS_URL)
    if not _reachable(redis.hostname or "127.0.0.1", redis.port or 6379):
        missing.append(f"Redis at {redis.hostname}:{redis.port}")
    if missing:
        # Integration tests are the point of this suite: a missing service fails the run, always.
        pytest.exit("Required services unreachable: " + ", ".join(missing), returncode=3)


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _redis_cache_isolated(settings):
    """Give each test its own cache namespace in the real Redis, so tests never see each other's keys."""
    from uuid import uuid4

    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid4().hex}"},
    }
