"""Test-wide setup: the real PostgreSQL and Redis must be there; nothing is skipped without them."""

import socket
from urllib.parse import urlsplit
from uuid import uuid4

import pytest
import redis
from django.conf import settings

from crm.models import Membership
from tests.factories import MembershipFactory, UserFactory

# The inbox tests' shared data (fixtures `workspace`, `agent_client`).
pytest_plugins = ["tests.crm.inbox_fixtures"]


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
def _fast_password_hashing(settings):
    # Tests create many users; the production hasher is slow on purpose (~0.3 s a password).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _redis_keys_isolated(settings):
    """Give each test its own key prefix in the real Redis, so tests never see each other's keys."""
    prefix = f"test-{uuid4().hex}"
    settings.CACHE_KEY_PREFIX = prefix
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": prefix}}
    yield
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        client.delete(key)
    client.close()


@pytest.fixture
def superuser_client(client, db):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def org_admin(db):
    """A staff user who is an admin of one organization, "Beta Bakery", and nothing else."""
    return MembershipFactory(role=Membership.Role.ADMIN, user__is_staff=True, organization__name="Beta Bakery")


@pytest.fixture
def org_admin_client(client, org_admin):
    client.force_login(org_admin.user)
    return client


@pytest.fixture(scope="session", autouse=True)
def _connection_pools_closed_at_the_end(django_db_setup, django_db_blocker):
    """Close the psycopg pools before the test database is dropped.

    Tests that use threads return their connections to the pool, which keeps them open; left
    there, they would keep PostgreSQL from dropping the test database at the end of the run.
    """
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        for connection in connections.all():
            connection.close()
            if hasattr(connection, "close_pool"):
                connection.close_pool()
