"""Celery task of the statistics beat (see messaging.services.statistics)."""

from celery import shared_task

from messaging.services import statistics


@shared_task(name="messaging.tasks.statistics.hourly_statistics_refresh", ignore_result=True)
def hourly_statistics_refresh_task() -> int:
    """Recompute the hourly statistics per number; return their row count."""
    return statistics.hourly_statistics_refresh()
