"""Redis cache entries that are never served stale: each name has a version, bumped after commit.

A reader takes the version first, then reads the database, then stores under that version. A
writer bumps the version after its transaction commits. So a reader that raced a write stores its
(maybe old) rows under the old version, which nobody asks for any more: the next read misses and
sees the committed change. Plain delete-on-commit cannot promise that (a slow reader would put the
old rows back after the delete). The TTL only bounds memory; correctness never waits for it.
"""

from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.db import transaction

CACHE_SECONDS = 300  # the seeds' 5-minute cache


def _version_key(name: str) -> str:
    return f"version:{name}"


def cached(name: str, compute: Callable[[], Any], *, timeout: int = CACHE_SECONDS) -> Any:
    """Return the value cached for `name` at its current version, computing and storing it on a miss."""
    version = cache.get(_version_key(name), 0)
    key = f"{name}:v{version}"
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, timeout)
    return value


def cache_invalidate(name: str) -> None:
    """Make every cached value of `name` old once the current transaction commits (at once outside one)."""

    def bump() -> None:
        # add() then incr(): both atomic in Redis, so concurrent bumps never get lost.
        cache.add(_version_key(name), 0, timeout=None)
        cache.incr(_version_key(name))

    transaction.on_commit(bump)


def numbers_cache_name(organization_id: int) -> str:
    return f"numbers:{organization_id}"


def plan_limits_cache_name(plan_id: int) -> str:
    return f"plan-limits:{plan_id}"
