"""Celery tasks of the outbox: delivery and the sweep (see messaging.services.outbound).

`message_deliver_task` is not `acks_late`: the message row, not the broker, is what is never lost.
A task that dies with its worker leaves its row queued or sending, and `outbox_sweep` re-enqueues
it after OUTBOX_STUCK_AFTER_SECONDS, long before a Redis broker would redeliver an unacknowledged
task (the visibility timeout, an hour); acks_late would cost about 15% of throughput (field notes)
for no recovery the sweep does not already give. Duplicate deliveries are harmless: the claim is a
compare-and-set. Retries are new tasks with a countdown, scheduled by the service after its commit.
"""

import logging

from celery import shared_task

from config.log_context import log_fields_bind
from messaging.services import outbound

logger = logging.getLogger(__name__)


@shared_task(name="messaging.tasks.outbound.message_deliver", ignore_result=True)
def message_deliver_task(message_id: int) -> str:
    """Deliver one outbound message; return what happened (skipped, sent, failed, retry)."""
    outcome = outbound.message_deliver(message_id=message_id)
    log_fields_bind(message_id=message_id)
    logger.info("message %s: %s", message_id, outcome.status)
    return outcome.status


@shared_task(name="messaging.tasks.outbound.outbox_sweep", ignore_result=True)
def outbox_sweep_task() -> int:
    """Re-enqueue messages a lost task or a dead worker left queued or sending; return how many."""
    return len(outbound.outbox_sweep())
