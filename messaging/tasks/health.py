"""Celery tasks of the health beat (see messaging.services.health): one task per server and number.

Checks are not retried: the next beat, five minutes later, is the retry, and a stale check is
worth nothing. Each task's time limit stays far below the broker's visibility timeout.
"""

from celery import shared_task

from messaging.services import health

# A check makes one or two provider calls, each bounded by the provider timeouts.
CHECK_TIME_LIMIT_SECONDS = 120


@shared_task(name="messaging.tasks.health.health_check_beat", ignore_result=True)
def health_check_beat_task() -> dict:
    """Enqueue a check of every provider server and connected number."""
    return health.health_check_beat()


@shared_task(name="messaging.tasks.health.server_health_check", ignore_result=True, time_limit=CHECK_TIME_LIMIT_SECONDS)
def server_health_check_task(server_id: int) -> bool | None:
    """Check one provider server; return whether it is healthy (None: it is gone)."""
    check = health.server_health_check(server_id=server_id)
    return None if check is None else check.is_healthy


@shared_task(name="messaging.tasks.health.number_health_check", ignore_result=True, time_limit=CHECK_TIME_LIMIT_SECONDS)
def number_health_check_task(number_id: int) -> str | None:
    """Check one connected number; return what happened to its silence (None: nothing checked)."""
    outcome = health.number_health_check(number_id=number_id)
    return None if outcome is None else outcome.silence
