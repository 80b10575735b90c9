"""Celery tasks of the cleanup beats (see messaging.services.cleanup)."""

from celery import shared_task

from messaging.services import cleanup


@shared_task(name="messaging.tasks.cleanup.numbers_archive", ignore_result=True)
def numbers_archive_task() -> int:
    """Archive self-hosted numbers disconnected and unseen for NUMBER_ARCHIVE_AFTER_DAYS; return how many."""
    return len(cleanup.numbers_archive())


@shared_task(name="messaging.tasks.cleanup.health_checks_prune", ignore_result=True)
def health_checks_prune_task() -> int:
    """Delete health check rows older than HEALTH_RETENTION_DAYS; return how many."""
    return cleanup.health_checks_prune()


@shared_task(name="messaging.tasks.cleanup.webhook_deliveries_prune", ignore_result=True)
def webhook_deliveries_prune_task() -> int:
    """Delete succeeded webhook deliveries older than WEBHOOK_LOG_RETENTION_DAYS; return how many."""
    return cleanup.webhook_deliveries_prune()
