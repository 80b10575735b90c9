"""A circuit breaker per provider server, its state shared by every process through Redis.

After `PROVIDER_BREAKER_FAILURES` temporary failures in a row, calls to that server stop for
`PROVIDER_BREAKER_RESET_SECONDS`; then one trial call decides whether it closes again. Permanent
errors (a bad number) say nothing about the server's health, so they do not count.
"""

import threading

import pybreaker
import redis
from django.conf import settings

from providers.base import ProviderError

_lock = threading.Lock()
_breakers: dict[str, pybreaker.CircuitBreaker] = {}  # by Redis namespace
_redis_clients: dict[str, redis.Redis] = {}


def _is_permanent(error: Exception) -> bool:
    return isinstance(error, ProviderError) and error.permanent


def _redis_client() -> redis.Redis:
    url = settings.REDIS_URL
    client = _redis_clients.get(url)
    if client is None:
        client = _redis_clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return client


def breaker_for(key: str) -> pybreaker.CircuitBreaker:
    """Return the process's breaker for `key`; its state lives in Redis under that key."""
    namespace = f"{settings.CACHE_KEY_PREFIX}:breaker:{key}"
    with _lock:
        breaker = _breakers.get(namespace)
        if breaker is None:
            storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, _redis_client(), namespace=namespace)
            breaker = pybreaker.CircuitBreaker(
                fail_max=settings.PROVIDER_BREAKER_FAILURES,
                reset_timeout=settings.PROVIDER_BREAKER_RESET_SECONDS,
                exclude=[_is_permanent],
                state_storage=storage,
                name=key,
                # The failure that trips the circuit is reported as itself, so callers keep its
                # status and Retry-After; only calls refused while open become CircuitBreakerError.
                throw_new_error_on_trip=False,
            )
            _breakers[namespace] = breaker
        return breaker


def breaker_call(key: str, function, *args, **kwargs):
    """Call `function` through the breaker for `key`.

    Raise ProviderError(permanent=False, circuit_open=True) while the circuit is open.
    """
    try:
        return breaker_for(key).call(function, *args, **kwargs)
    except pybreaker.CircuitBreakerError as error:
        raise ProviderError(
            f"Provider {key} is failing; calls are paused for up to {settings.PROVIDER_BREAKER_RESET_SECONDS} s",
            permanent=False,
            retry_after=settings.PROVIDER_BREAKER_RESET_SECONDS,
            circuit_open=True,
        ) from error


def breaker_state(key: str) -> str:
    """Return 'closed', 'open' or 'half-open' as every process sees it."""
    return breaker_for(key).current_state


def breaker_trip(key: str) -> None:
    """Open the circuit for `key` now, for every process: a health check found its server dead.

    The breaker's own clock then decides as usual: after PROVIDER_BREAKER_RESET_SECONDS one trial
    call (a send, or the next health check) closes it again or keeps it open.
    """
    breaker = breaker_for(key)
    if breaker.current_state != pybreaker.STATE_OPEN:
        breaker.open()
