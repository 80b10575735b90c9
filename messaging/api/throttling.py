"""Per-key request rate, by plan (Plan.api_requests_per_minute), counted atomically in Redis.

A fixed one-minute window per key: INCR and EXPIRE run in one MULTI/EXEC, so every request gets a
distinct count and exactly `limit` requests of a window pass, however many clients race (DRF's
cache throttle reads then writes, which lets bursts through: DRF #5181). Refused requests count
too, so a client hammering past its limit does not get in sooner. Sessions (the browser) are not
throttled: they are people, and the inbox pages have their own costs.
"""

import time
from dataclasses import dataclass

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from crm.cache import redis_client
from crm.models import ApiKey

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    reset: int  # Unix time at which the window ends
    retry_after: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


def clock() -> float:
    """The time windows are cut from (a function, so a test can hold a window still)."""
    return time.time()


def rate_limit_count(*, api_key_id: int, limit: int) -> RateLimitState:
    """Count one request of the key in the current window; return where the key stands."""
    now = clock()
    window = int(now // WINDOW_SECONDS)
    key = f"{settings.CACHE_KEY_PREFIX}:ratelimit:{api_key_id}:{window}"
    pipeline = redis_client().pipeline(transaction=True)
    pipeline.incr(key)
    # A little longer than the window, so a clock a bit behind ours still finds its count.
    pipeline.expire(key, WINDOW_SECONDS + 5)
    count, _ = pipeline.execute()
    reset = (window + 1) * WINDOW_SECONDS
    return RateLimitState(
        limit=limit,
        remaining=max(0, limit - count),
        reset=reset,
        retry_after=max(1, int(reset - now + 0.999)) if count > limit else 0,
    )


class ApiKeyRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True
        # The plan's rate came with the key's cached grant (crm.selectors.api_key_valid).
        state = rate_limit_count(api_key_id=api_key.pk, limit=request.user.requests_per_minute)
        request.rate_limit = state  # the views add its headers to every response
        self.state = state
        return state.retry_after == 0

    def wait(self) -> float:
        return self.state.retry_after
