"""Celery tasks of webhooks to integrators (see messaging.services.webhooks_out)."""

from celery import shared_task

from messaging.services import webhooks_out


@shared_task(name="messaging.tasks.webhooks_out.webhook_fanout", ignore_result=True)
def webhook_fanout_task() -> int:
    """Turn new events into deliveries (every few seconds, from beat), then recover lost ones."""
    created = webhooks_out.webhook_fanout()
    webhooks_out.webhook_deliveries_sweep()
    return created


@shared_task(name="messaging.tasks.webhooks_out.webhook_deliver", ignore_result=True)
def webhook_deliver_task(delivery_id: int) -> str:
    """Make one attempt of a delivery; the service schedules the retry after its commit."""
    return webhooks_out.webhook_delivery_attempt(delivery_id=delivery_id)
