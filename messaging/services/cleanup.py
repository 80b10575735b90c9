"""Cleanup beats: archive numbers long gone from self-hosted servers, prune old health rows.

Each run logs what it removed. Deletes of old rows go in bounded batches by id range, never one
huge DELETE: a long delete holds locks, bloats WAL and can outlive the broker's visibility timeout.
`rows_prune_in_batches` is the one way to do it; other logs (the outbound-webhook delivery log,
when it lands) prune through it with their own retention.
"""

import dataclasses
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Model, OuterRef, Q, QuerySet
from django.utils import timezone

from crm.models import HealthCheck, WhatsAppNumber
from crm.selectors import number_provider_target, numbers_active
from crm.services import number_changed
from messaging.events import event_log_lock, number_state_event
from messaging.models import Message, WebhookAttempt, WebhookDelivery
from providers.registry import SELF_HOSTED_PROVIDERS

logger = logging.getLogger(__name__)

# "Disconnected": the session is over. Not `connecting`/`waiting_for_qr_scan` (someone is pairing
# it now) and not `not_provisioned` (never on a server: nothing to remove there).
ARCHIVABLE_STATES = (
    WhatsAppNumber.State.DISCONNECTED,
    WhatsAppNumber.State.LOGGED_OUT,
    WhatsAppNumber.State.BANNED,
)
ARCHIVE_BATCH = 200
PRUNE_BATCH = 5000


# --- numbers --------------------------------------------------------------------------------------
def numbers_archivable(*, now: datetime) -> QuerySet[WhatsAppNumber]:
    """Self-hosted numbers disconnected and unseen for NUMBER_ARCHIVE_AFTER_DAYS, not archived yet."""
    cutoff = now - timedelta(days=settings.NUMBER_ARCHIVE_AFTER_DAYS)
    # A message in the period means the number was alive whatever its recorded state says (a lost
    # connection webhook): deleting its instance would cut a working number off.
    recent_message = Message.objects.filter(number=OuterRef("pk"), created_at__gte=cutoff)
    return numbers_active().filter(
        Q(last_seen_at__lt=cutoff) | Q(last_seen_at__isnull=True, created_at__lt=cutoff),
        ~Exists(recent_message),
        provider__in=SELF_HOSTED_PROVIDERS,
        state__in=ARCHIVABLE_STATES,
    )


def numbers_archive(*, now: datetime | None = None, limit: int = ARCHIVE_BATCH) -> list[int]:
    """Archive up to `limit` archivable numbers; return their ids (the next run takes the rest)."""
    now = now or timezone.now()
    candidates = list(numbers_archivable(now=now).order_by("id").values_list("id", flat=True)[:limit])
    archived = [number_id for number_id in candidates if number_archive(number_id=number_id, now=now)]
    logger.info(
        "cleanup: archived %s number(s) disconnected for over %s days: %s",
        len(archived),
        settings.NUMBER_ARCHIVE_AFTER_DAYS,
        archived,
    )
    return archived


def number_archive(*, number_id: int, now: datetime) -> bool:
    """Archive the number if it still qualifies and remove its instance from its server after commit.

    The row is archived first and the provider is called after (a task, with retries): an archived
    number is out of every list, placement and check, so nothing uses the instance meanwhile.
    Return whether it was archived.
    """
    from crm.tasks import provider_instance_delete

    number = WhatsAppNumber.objects.filter(pk=number_id).values("organization_id").first()
    if number is None:
        return False
    with transaction.atomic():
        event_log_lock(number["organization_id"])
        # Compare-and-set: a number that reconnected (or was archived) since the list was made stays.
        changed = numbers_archivable(now=now).filter(pk=number_id).update(archived_at=now)
        if not changed:
            return False
        archived = WhatsAppNumber.objects.select_related("server").get(pk=number_id)
        number_state_event(
            archived,
            reason=f"Archived: disconnected and unseen for over {settings.NUMBER_ARCHIVE_AFTER_DAYS} days.",
            archived_at=now.isoformat(),
        )
        number_changed(organization_id=archived.organization_id)  # it leaves the cached numbers list
        payload = dataclasses.asdict(number_provider_target(archived))
        transaction.on_commit(lambda: provider_instance_delete.delay(payload))
    return True


# --- old rows -------------------------------------------------------------------------------------
def rows_prune_in_batches(
    model: type[Model],
    *,
    time_field: str,
    cutoff: datetime,
    batch_size: int = PRUNE_BATCH,
    only: dict | None = None,
) -> int:
    """Delete `model` rows whose `time_field` is before `cutoff` (and that match `only`), `batch_size`
    ids at a time.

    Each DELETE covers one id range (`id >= low AND id < low + batch_size`, still filtered by time),
    in its own short transaction. Return how many rows were deleted.
    """
    old = model.objects.filter(**{f"{time_field}__lt": cutoff}, **(only or {}))
    deleted = 0
    low = None
    while True:
        # The next old row's id starts the next range, so gaps of new or deleted rows cost nothing.
        start = old.filter(id__gte=low) if low is not None else old
        first = start.order_by("id").values_list("id", flat=True).first()
        if first is None:
            return deleted
        with transaction.atomic():
            count, _ = old.filter(id__gte=first, id__lt=first + batch_size).delete()
        deleted += count
        low = first + batch_size


def health_checks_prune(*, now: datetime | None = None, batch_size: int = PRUNE_BATCH) -> int:
    """Delete health check rows older than HEALTH_RETENTION_DAYS; return how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.HEALTH_RETENTION_DAYS)
    deleted = rows_prune_in_batches(HealthCheck, time_field="checked_at", cutoff=cutoff, batch_size=batch_size)
    logger.info("cleanup: pruned %s health check(s) older than %s days", deleted, settings.HEALTH_RETENTION_DAYS)
    return deleted


def webhook_deliveries_prune(*, now: datetime | None = None, batch_size: int = PRUNE_BATCH) -> int:
    """Delete succeeded webhook deliveries (and their attempt logs) older than WEBHOOK_LOG_RETENTION_DAYS.

    Failed ones stay, whatever their age: an admin may still want to read and replay them.
    Return how many deliveries were deleted.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.WEBHOOK_LOG_RETENTION_DAYS)
    # Attempts first, by the same ranges of their own ids: each batch stays one short DELETE.
    rows_prune_in_batches(
        WebhookAttempt,
        time_field="created_at",
        cutoff=cutoff,
        batch_size=batch_size,
        only={"delivery__status": WebhookDelivery.Status.SUCCEEDED, "delivery__updated_at__lt": cutoff},
    )
    deleted = rows_prune_in_batches(
        WebhookDelivery,
        time_field="updated_at",
        cutoff=cutoff,
        batch_size=batch_size,
        only={"status": WebhookDelivery.Status.SUCCEEDED},
    )
    logger.info(
        "cleanup: pruned %s delivered webhook(s) older than %s days", deleted, settings.WEBHOOK_LOG_RETENTION_DAYS
    )
    return deleted
