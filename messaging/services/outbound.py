"""The outbox: accepting sends, delivering them through the number's provider, and recovering.

The message row is the truth. `message_send` writes it (queued) in one transaction and enqueues
delivery only after commit; it never calls a provider. `message_deliver` claims the row with a
compare-and-set, so a task delivered twice sends once, and only when no older message of the same
chat is still waiting, so a chat's messages reach the provider in the order they were accepted.
`outbox_sweep` re-enqueues whatever a lost task or a killed worker left behind.

Lock order, the same for every writer so nothing deadlocks: the organization's event-log lock
first (`event_log_lock`), then the daily usage, chat and message rows.
"""

import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.text import Truncator

from config.log_context import log_fields_bind
from config.metrics import messages_counted, send_latency_observed
from crm.models import Chat, ContactIdentity, Organization, WhatsAppNumber
from crm.selectors import number_provider_target
from crm.services import NoServerAvailableError, number_provision
from messaging.events import event_append, event_log_lock, message_event_data, message_status_event
from messaging.models import Message
from messaging.services.chats import chat_message_touch
from providers.base import MediaPayload, ProviderError, SendResult
from providers.registry import adapter_for

logger = logging.getLogger(__name__)

IDEMPOTENCY_COLUMN = "idempotency_key"  # in the unique violation's text, on PostgreSQL and SQLite
_WAITING = (Message.Status.QUEUED, Message.Status.SENDING)


class QuotaExceededError(Exception):
    """The organization sent its plan's messages for today; `resets_at` is the next UTC midnight."""

    def __init__(self, *, limit: int, resets_at: datetime):
        super().__init__(f"The daily quota of {limit} messages is used up; it resets at {resets_at.isoformat()}.")
        self.limit = limit
        self.resets_at = resets_at


class IdempotencyKeyReusedError(Exception):
    """The idempotency key already belongs to a different send (another chat or text)."""


class MessageStateError(Exception):
    """The message is not in a state that allows the action (retry a sent one, cancel a sending one)."""


# --- accepting -------------------------------------------------------------------------------------
def message_send(
    *,
    organization: Organization,
    chat: Chat,
    sent_by=None,
    text: str = "",
    media=None,
    idempotency_key: str | None = None,
    scheduled_at: datetime | None = None,
) -> tuple[Message, bool]:
    """Accept an outbound message: count it, queue it, and deliver it after commit.

    Return (message, created). With an `idempotency_key` already used in the organization, return
    the first message and created=False, sending nothing more, even when both requests race.
    Raise QuotaExceededError over the plan's daily quota, IdempotencyKeyReusedError when the key
    belongs to another chat or text, ValueError for a chat of another organization.
    """
    if chat.organization_id != organization.pk:
        raise ValueError("The chat belongs to another organization.")
    idempotency_key = idempotency_key or None
    # No look-up of the key first: a replay is rare, so the insert's unique constraint finds it,
    # and the rollback undoes the quota count. One query less on every send.
    try:
        with transaction.atomic():
            message = _message_accept(
                organization=organization,
                chat=chat,
                sent_by=sent_by,
                text=text,
                media=media,
                idempotency_key=idempotency_key,
                scheduled_at=scheduled_at,
            )
    except IntegrityError as error:
        # The key was used before, or by a racing request that committed first: the unique
        # constraint decided, and this whole transaction (its quota count included) rolled back.
        # (PostgreSQL names the constraint; SQLite names its columns.)
        if not idempotency_key or IDEMPOTENCY_COLUMN not in str(error):
            raise
        existing = _message_by_key(organization.pk, idempotency_key)
        if existing is None:
            raise
        return _replayed(existing, chat=chat, text=text), False
    except QuotaExceededError:
        # A replay of a send accepted earlier today answers that message, even over the quota.
        existing = _message_by_key(organization.pk, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return _replayed(existing, chat=chat, text=text), False
    return message, True


def _message_by_key(organization_id: int, idempotency_key: str) -> Message | None:
    return Message.objects.filter(organization_id=organization_id, idempotency_key=idempotency_key).first()


def _replayed(message: Message, *, chat: Chat, text: str) -> Message:
    if message.chat_id != chat.pk or message.text != text:
        raise IdempotencyKeyReusedError("This idempotency key was already used for a different message.")
    return message


def _message_accept(*, organization, chat, sent_by, text, media, idempotency_key, scheduled_at) -> Message:
    event_log_lock(organization.pk)
    now = timezone.now()
    quota_count(organization=organization, now=now)
    message = Message(
        organization=organization,
        number_id=chat.number_id,
        chat=chat,
        direction=Message.Direction.OUTBOUND,
        type=_media_type(media) if media else Message.Type.TEXT,
        text=text,
        status=Message.Status.QUEUED,
        max_attempts=settings.MESSAGE_MAX_ATTEMPTS,
        scheduled_at=scheduled_at,
        sent_by=sent_by,
        idempotency_key=idempotency_key,
        timestamp=now,
    )
    if media:
        # An attachment is in our storage from the upload on: stored, like inbound media once copied.
        message.media_state = Message.MediaState.STORED
        message.media = media
        message.media_mime_type = getattr(media, "content_type", "") or ""
        message.media_filename = getattr(media, "name", "") or ""
    # Updating the chat before inserting takes its row lock: sends to one chat commit one at a
    # time, so ids within a chat follow acceptance order, which is the order delivery keeps.
    chat_state = chat_message_touch(chat_id=chat.pk, message=message)
    message.save()
    event_append(
        organization_id=organization.pk,
        type="message.created",
        chat_id=chat.pk,
        number_id=chat.number_id,
        data=message_event_data(message, chat=chat_state),
    )
    transaction.on_commit(lambda: deliver_enqueue(message.pk, eta=scheduled_at))
    return message


def _media_type(media) -> str:
    mime_type = getattr(media, "content_type", "") or ""
    for prefix, kind in (
        ("image/", Message.Type.IMAGE),
        ("audio/", Message.Type.AUDIO),
        ("video/", Message.Type.VIDEO),
    ):
        if mime_type.startswith(prefix):
            return kind
    return Message.Type.DOCUMENT


def quota_resets_at(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time.min, tzinfo=UTC)


def quota_count(*, organization: Organization, now: datetime) -> int:
    """Count one send in today's (UTC) usage; return the new count.

    One conditional upsert: the row lock it takes serializes concurrent sends of the organization,
    and the WHERE refuses the one past the limit, so refusals are exact under any concurrency.
    Raise QuotaExceededError when the plan's daily limit is reached.
    """
    limit = organization.plan.messages_per_day
    day = now.astimezone(UTC).date()
    with connection.cursor() as cursor:
        # Unlimited plans (no limit) are still counted, for usage reports, with no ceiling.
        cursor.execute(
            """
            INSERT INTO messaging_dailyusage (organization_id, day, messages_sent)
            VALUES (%(organization)s, %(day)s, 1)
            ON CONFLICT (organization_id, day) DO UPDATE
            SET messages_sent = messaging_dailyusage.messages_sent + 1
            WHERE %(limit)s IS NULL OR messaging_dailyusage.messages_sent < %(limit)s
            RETURNING messages_sent
            """,
            {"organization": organization.pk, "day": day, "limit": limit},
        )
        row = cursor.fetchone()
    if row is None or (limit is not None and row[0] > limit):
        # A limit of 0 still inserts the first row; the check above refuses it and the caller's
        # transaction rolls the row back.
        raise QuotaExceededError(limit=limit, resets_at=quota_resets_at(now))
    return row[0]


# --- by hand: retry, cancel ------------------------------------------------------------------------
@transaction.atomic
def message_retry(*, message: Message) -> Message:
    """Put a failed outbound message back in the outbox with fresh attempts.

    Raise MessageStateError when the message is not a failed outbound one.
    """
    event_log_lock(message.organization_id)
    now = timezone.now()
    changed = Message.objects.filter(
        pk=message.pk, direction=Message.Direction.OUTBOUND, status=Message.Status.FAILED
    ).update(
        status=Message.Status.QUEUED,
        attempts=0,
        max_attempts=settings.MESSAGE_MAX_ATTEMPTS,
        error="",
        scheduled_at=None,
        updated_at=now,
    )
    if not changed:
        raise MessageStateError("Only failed outbound messages can be retried.")
    message.refresh_from_db()
    message_status_event(message)
    transaction.on_commit(lambda: deliver_enqueue(message.pk))
    return message


@transaction.atomic
def message_cancel(*, message: Message, cancelled_by=None) -> Message:
    """Cancel an outbound message that is still queued (scheduled, or waiting to retry).

    A cancelled message stays in the chat as failed with the reason "Cancelled ...": deleting it
    would hide what was planned and orphan its events, and it can still be sent by retrying it.
    Raise MessageStateError when it is already being sent or was sent.
    """
    event_log_lock(message.organization_id)
    who = f" by {cancelled_by}" if cancelled_by else ""
    reason = f"Cancelled{who} before it was sent."
    changed = Message.objects.filter(
        pk=message.pk, direction=Message.Direction.OUTBOUND, status=Message.Status.QUEUED
    ).update(status=Message.Status.FAILED, error=reason, updated_at=timezone.now())
    if not changed:
        raise MessageStateError("Only queued messages can be cancelled; this one is being sent or was sent.")
    message.refresh_from_db()
    message_status_event(message)
    _chat_next_enqueue(message.chat_id)
    return message


# --- delivering ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeliveryOutcome:
    """What one delivery run did: claimed or not, and when to try again (None: no retry)."""

    status: str  # "skipped", "sent", "failed", "retry"
    retry_in: float | None = None


# Portable SQL (PostgreSQL, and SQLite for embedded mode): the time is a parameter, not now().
_CLAIM_SQL = """
UPDATE messaging_message AS message
SET status = 'sending', attempts = message.attempts + 1, updated_at = %(now)s
WHERE message.id = %(id)s
  AND message.status = 'queued'
  AND message.direction = 'out'
  AND message.attempts < message.max_attempts
  AND (message.scheduled_at IS NULL OR message.scheduled_at <= %(now)s)
  AND NOT EXISTS (
    SELECT 1 FROM messaging_message AS older
    WHERE older.chat_id = message.chat_id
      AND older.direction = 'out'
      AND older.id < message.id
      AND older.status IN ('queued', 'sending')
      -- A message scheduled for later does not hold back the chat's messages sent now.
      AND (older.scheduled_at IS NULL OR older.scheduled_at <= %(now)s)
  )
RETURNING id
"""


def message_claim(*, message_id: int) -> bool:
    """Move the message from queued to sending, spending an attempt, if it is its chat's turn.

    The compare-and-set is the whole guard: a redelivered or duplicate task finds the row no longer
    queued and does nothing; a message with an older one of its chat still waiting stays queued
    (the older one enqueues it when done).
    """
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, {"id": message_id, "now": timezone.now()})
        return cursor.fetchone() is not None


# After a send succeeds, the same task goes on with the chat's next waiting message, up to this
# many in a row: each one saves a broker round trip and a task start (the chat's order is kept
# either way), and the bound hands a busy chat back to the queue so other chats get workers too.
CHAT_MESSAGES_PER_TASK = 10


def message_deliver(*, message_id: int) -> DeliveryOutcome:
    """Deliver one queued outbound message through its number's provider, then its chat's next ones.

    Return what happened to `message_id` itself. Never raises for provider failures: they become a
    retry (temporary) or a failed message (permanent, or attempts used up), recorded on the row.
    """
    outcome, next_id = _message_deliver_one(message_id)
    for _ in range(CHAT_MESSAGES_PER_TASK - 1):
        if next_id is None:
            return outcome
        _, next_id = _message_deliver_one(next_id)
    if next_id is not None:
        deliver_enqueue(next_id)
    return outcome


def _message_deliver_one(message_id: int) -> tuple[DeliveryOutcome, int | None]:
    """Deliver one message; return the outcome and, after a success, the chat's next message due."""
    log_fields_bind(message_id=message_id)
    if not message_claim(message_id=message_id):
        return DeliveryOutcome("skipped"), None
    message = Message.objects.select_related("number__server", "chat__contact").get(pk=message_id)
    try:
        result = _provider_send(message)
    except ProviderError as error:
        return _delivery_failed(message, error), None
    except NoServerAvailableError as error:
        return _delivery_failed(message, ProviderError(str(error), permanent=False)), None
    except Exception as error:
        # An adapter bug must not leave the row in `sending` until the sweep: fail readably.
        logger.exception("sending message %s crashed", message_id)
        failure = ProviderError(f"Unexpected error while sending: {error!r}", permanent=True)
        return _delivery_failed(message, failure), None
    return DeliveryOutcome("sent"), _delivery_succeeded(message, result)


def _provider_send(message: Message) -> SendResult:
    number = message.number
    if number.state == WhatsAppNumber.State.NOT_PROVISIONED:
        number = number_provision(number_id=number.pk)
    adapter = adapter_for(number.provider)
    target = number_provider_target(number)
    to = _recipient(message)
    if message.type == Message.Type.TEXT:
        return adapter.send_text(target, to=to, text=message.text)
    with message.media.open("rb") as file:
        content = file.read()
    media = MediaPayload(
        kind=message.type,
        content=content,
        filename=message.media_filename,
        mime_type=message.media_mime_type,
        caption=message.text,
    )
    return adapter.send_media(target, to=to, media=media)


def _recipient(message: Message) -> str:
    contact = message.chat.contact
    if contact.phone:
        return contact.phone
    identity = ContactIdentity.objects.filter(contact=contact).order_by("kind", "id").first()
    if identity is None:
        raise ProviderError(f"{contact} has neither a phone number nor a WhatsApp id.", permanent=True)
    return identity.value


def _delivery_succeeded(message: Message, result: SendResult) -> int | None:
    """Record the provider's id and `sent`; return the chat's next message due, for the caller to send.

    In the fewest statements: they run under the organization's event-log lock.
    """
    now = timezone.now()
    with transaction.atomic():
        event_log_lock(message.organization_id)
        try:
            with transaction.atomic():
                # Queued too: the sweep may have taken a very slow send for lost; the provider has it.
                # sending/queued → sent always moves forward, so no status check beyond the WHERE.
                sent = Message.objects.filter(pk=message.pk, status__in=_WAITING).update(
                    provider_message_id=result.provider_message_id, status=Message.Status.SENT, error="", updated_at=now
                )
                message.provider_message_id = result.provider_message_id
        except IntegrityError:
            # The provider's echo of our own send was stored first as a separate row (inbound ingest
            # of a from-me message): keep ours sent, without the id the other row holds.
            logger.warning("message %s: provider id %s already stored", message.pk, result.provider_message_id)
            sent = Message.objects.filter(pk=message.pk, status__in=_WAITING).update(
                status=Message.Status.SENT, error="", updated_at=now
            )
        if sent:
            message.status, message.error, message.updated_at = Message.Status.SENT, "", now
            message_status_event(message)
            accepted_for = (now - message.created_at).total_seconds()
            transaction.on_commit(lambda: _sent_counted(accepted_for))
    return _chat_next_id(message.chat_id)


def _sent_counted(accepted_for_seconds: float) -> None:
    messages_counted("out")
    send_latency_observed(accepted_for_seconds)


def _delivery_failed(message: Message, error: ProviderError) -> DeliveryOutcome:
    reason = Truncator(error.message or str(error)).chars(1000)
    with transaction.atomic():
        event_log_lock(message.organization_id)
        current = Message.objects.select_for_update().get(pk=message.pk)
        if current.status != Message.Status.SENDING:
            return DeliveryOutcome("skipped")  # the sweep or a cancel moved it meanwhile
        if error.circuit_open:
            # Nothing reached the provider: the attempt is given back and the message waits.
            current.attempts -= 1
            delay = retry_delay(attempt=1, retry_after=error.retry_after)
            return _back_to_queue(current, reason, delay)
        if not error.permanent and current.attempts < current.max_attempts:
            return _back_to_queue(current, reason, retry_delay(attempt=current.attempts, retry_after=error.retry_after))
        if not error.permanent:
            reason = f"Gave up after {current.attempts} attempts: {reason}"
        current.status = Message.Status.FAILED
        current.error = reason
        current.save(update_fields=["status", "error", "attempts", "updated_at"])
        message_status_event(current)
        _chat_next_enqueue(current.chat_id)
    return DeliveryOutcome("failed")


def _back_to_queue(message: Message, reason: str, delay: float) -> DeliveryOutcome:
    message.status = Message.Status.QUEUED
    message.error = reason
    message.save(update_fields=["status", "error", "attempts", "updated_at"])
    # Still queued, it keeps holding back the younger messages of its chat: order survives retries.
    transaction.on_commit(lambda: deliver_enqueue(message.pk, countdown=delay))
    return DeliveryOutcome("retry", retry_in=delay)


def retry_delay(*, attempt: int, retry_after: float | None = None) -> float:
    """Return seconds before the next attempt: capped exponential backoff with full jitter.

    The provider's Retry-After wins when longer. The cap (OUTBOX_RETRY_MAX_SECONDS) stays below the
    broker's visibility timeout, beyond which a Redis broker would run a delayed task twice.
    """
    ceiling = min(settings.OUTBOX_RETRY_MAX_SECONDS, settings.CELERY_BROKER_VISIBILITY_TIMEOUT / 2)
    backoff = min(ceiling, settings.OUTBOX_RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1))
    # Jitter spreads the retries of a burst that failed together, so they do not return together.
    delay = backoff / 2 + random.uniform(0, backoff / 2)  # noqa: S311
    if retry_after:
        delay = max(delay, retry_after)
    return min(delay, ceiling)


def _chat_next_id(chat_id: int) -> int | None:
    """Return the chat's oldest queued outbound message that is due (its turn comes next)."""
    return (
        Message.objects.filter(chat_id=chat_id, direction=Message.Direction.OUTBOUND, status=Message.Status.QUEUED)
        .exclude(scheduled_at__gt=timezone.now())
        .order_by("id")
        .values_list("id", flat=True)
        .first()
    )


def _chat_next_enqueue(chat_id: int) -> None:
    """After a message of the chat is done, enqueue the chat's next waiting one (its turn came)."""
    next_id = _chat_next_id(chat_id)
    if next_id is not None:
        transaction.on_commit(lambda: deliver_enqueue(next_id))


def deliver_enqueue(message_id: int, *, countdown: float | None = None, eta: datetime | None = None) -> None:
    """Send the delivery task to the broker (call after commit: the worker must see the row)."""
    from messaging.tasks.outbound import message_deliver_task

    options: dict = {}
    if countdown:
        options["countdown"] = countdown
    elif eta is not None and eta > timezone.now():
        # Far-off schedules are left to the sweep: an ETA beyond the broker's visibility timeout
        # would be delivered twice by a Redis broker (celery#3270).
        if (eta - timezone.now()).total_seconds() > settings.CELERY_BROKER_VISIBILITY_TIMEOUT / 2:
            return
        options["eta"] = eta
    try:
        message_deliver_task.apply_async((message_id,), **options)
    except Exception:
        # The row is queued and committed: the sweep enqueues it again, so a broker hiccup only delays.
        logger.warning("could not enqueue delivery of message %s; the sweep will", message_id, exc_info=True)


# --- recovering ------------------------------------------------------------------------------------
def outbox_sweep(*, now: datetime | None = None) -> list[int]:
    """Re-enqueue what the broker lost or a dead worker left; return the message ids enqueued.

    A message `sending` for longer than OUTBOX_STUCK_AFTER_SECONDS lost its worker: it goes back to
    queued, keeping the attempt it spent (the provider may have had it), or fails when that was its
    last. For each chat, the oldest queued message that is due and either stale or just came due
    (a scheduled time) is enqueued; the rest of the chat follows it in order.
    """
    now = now or timezone.now()
    stuck_before = now - timedelta(seconds=settings.OUTBOX_STUCK_AFTER_SECONDS)
    # A message waiting out a retry delay was updated when it failed; it is stale only after the
    # longest delay too, so the sweep does not cut backoffs short.
    retry_stuck_before = stuck_before - timedelta(seconds=settings.OUTBOX_RETRY_MAX_SECONDS)
    with connection.cursor() as cursor:
        # Its own statement and transaction: it appends no events, so it takes no organization lock
        # while holding message rows (see event_log_lock for the one lock order).
        cursor.execute(
            """
            UPDATE messaging_message SET status = 'queued', error = %(reason)s, updated_at = %(now)s
            WHERE status = 'sending' AND updated_at < %(stuck_before)s AND attempts < max_attempts
            RETURNING id
            """,
            {"reason": "Delivery was interrupted; trying again.", "now": now, "stuck_before": stuck_before},
        )
        recovered = [row[0] for row in cursor.fetchall()]
    stuck_on_last_attempt = Message.objects.filter(
        status=Message.Status.SENDING, updated_at__lt=stuck_before
    ).values_list("pk", "organization_id")
    for message_id, organization_id in stuck_on_last_attempt:
        _interrupted_fail(message_id=message_id, organization_id=organization_id, stuck_before=stuck_before)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT MIN(id) FROM messaging_message
            WHERE status = 'queued' AND direction = 'out'
              AND (scheduled_at IS NULL OR scheduled_at <= %(now)s)
              AND (
                scheduled_at > updated_at
                OR (error = '' AND updated_at < %(stuck_before)s)
                OR updated_at < %(retry_stuck_before)s
              )
            GROUP BY chat_id
            """,
            {"now": now, "stuck_before": stuck_before, "retry_stuck_before": retry_stuck_before},
        )
        ids = sorted({*recovered, *(row[0] for row in cursor.fetchall())})
    for message_id in ids:
        deliver_enqueue(message_id)
    return ids


@transaction.atomic
def _interrupted_fail(*, message_id: int, organization_id: int, stuck_before: datetime) -> None:
    """Fail a message whose last attempt was interrupted, unless its worker finished it meanwhile."""
    event_log_lock(organization_id)
    message = (
        Message.objects.select_for_update()
        .filter(pk=message_id, status=Message.Status.SENDING, updated_at__lt=stuck_before)
        .first()
    )
    if message is None:
        return
    message.status = Message.Status.FAILED
    message.error = "Delivery was interrupted on its last attempt; check the chat, then retry by hand."
    message.save(update_fields=["status", "error", "updated_at"])
    message_status_event(message)
    _chat_next_enqueue(message.chat_id)
