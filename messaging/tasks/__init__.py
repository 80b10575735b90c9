"""Celery tasks of messaging, one module per flow; importing them here registers them with Celery."""

from messaging.tasks import cleanup, health, inbound, numbers, outbound, statistics, webhooks_out  # noqa: F401
