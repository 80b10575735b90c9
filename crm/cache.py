"""Redis cache entries that are never served stale: each name has a version, bumped after commit.

A reader takes the version first, then reads the database, then stores the value together with
the version it read. A writer bumps the version after its transaction commits. A value is served
only while its version is the current one, so a reader that raced a write and stored old rows
stored them with the old version: the next read misses and sees the committed change. Plain
delete-on-commit cannot promise that (a slow reader would put the old rows back after the
delete). Version and value come back in one MGET: one Redis round trip per read. The TTL only
bounds memory; correctness never waits for it.
"""

import pickle
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

CACHE_SECONDS = 300  # the seeds' 5-minute cache
_redis_clients: dict[str, redis.Redis] = {}


def redis_client() -> redis.Redis:
    """The process's Redis client for REDIS_URL (thread-safe; one connection pool per process).

    Raw redis-py, not Django's cache: these reads are on every API request, and Django's Redis
    cache builds a client object per call (~0.15 ms each, measured in bench/api.py).
    """
    client = _redis_clients.get(settings.REDIS_URL)
    if client is None:
        # setdefault: threads racing here all get the one stored client. A client replaced in the
        # dict would be garbage-collected and close the sockets the other threads are using.
        client = _redis_clients.setdefault(settings.REDIS_URL, redis.Redis.from_url(settings.REDIS_URL))
    return client


def _entry_key(name: str) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:cache:{name}"


def _version_key(name: str) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:cache-version:{name}"


def cached(name: str, compute: Callable[[], Any], *, timeout: int = CACHE_SECONDS) -> Any:
    """Return the value cached for `name` at its current version, computing and storing it on a miss."""
    return cached_under(name, name, compute, timeout=timeout)


def cached_under(version_name: str, name: str, compute: Callable[[], Any], *, timeout: int = CACHE_SECONDS) -> Any:
    """Like `cached`, for an entry whose version is shared with others (`version_name`)."""
    client = redis_client()
    version_raw, entry_raw = client.mget(_version_key(version_name), _entry_key(name))
    version = int(version_raw or 0)
    if entry_raw is not None:
        # Pickle, as Django's Redis cache does: Redis is ours, and only this module writes here.
        entry_version, value = pickle.loads(entry_raw)  # noqa: S301
        if entry_version == version:
            return value
    value = compute()
    client.set(_entry_key(name), pickle.dumps((version, value)), ex=timeout)
    return value


def cache_invalidate(name: str) -> None:
    """Make every cached value of `name` old once the current transaction commits (at once outside one)."""
    # INCR is atomic and starts a missing version at 1: concurrent bumps are never lost.
    transaction.on_commit(lambda: redis_client().incr(_version_key(name)))


def api_keys_cache_name() -> str:
    # One version for every key: revoking, rotating, deleting a key or changing an organization
    # is rare, and a key's entry must go stale on any of them.
    return "api-keys"


def numbers_cache_name(organization_id: int) -> str:
    return f"numbers:{organization_id}"


def plan_limits_cache_name(plan_id: int) -> str:
    return f"plan-limits:{plan_id}"
