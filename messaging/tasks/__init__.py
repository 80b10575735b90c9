"""Celery tasks of messaging, one module per flow; importing them here registers them with Celery."""

from messaging.tasks import inbound, numbers, outbound, webhooks_out  # noqa: F401
