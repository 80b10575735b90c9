"""`GET /healthz` for load balancers: 200 when this process reaches PostgreSQL and Redis, else 503.

It answers without a session, a CSRF token or a database session row, and says which dependency
failed (never how: no host names, no passwords), so a balancer takes a broken machine out of
rotation and an operator sees why.
"""

import logging

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)
REDIS_TIMEOUT_SECONDS = 1.0


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        logger.warning("health: database unreachable", exc_info=True)
        return False


def _redis_ok() -> bool:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        logger.warning("health: Redis unreachable", exc_info=True)
        return False
    finally:
        client.close()


@never_cache
@require_GET
def health(request):
    checks = {"database": _database_ok(), "redis": _redis_ok()}
    healthy = all(checks.values())
    body = {
        "status": "ok" if healthy else "unavailable",
        "checks": {k: "ok" if v else "failed" for k, v in checks.items()},
    }
    return JsonResponse(body, status=200 if healthy else 503)
