"""Signed webhooks to integrators: subscriptions, the fan-out from the event log, delivery, replay.

Why a fan-out that reads the log, and not a hook in `event_append`: the event log is already
written in the same transaction as every change, with a gap-free per-organization cursor (events
commit in cursor order under the organization's row lock). Reading it after each subscription's
cursor therefore misses nothing and adds nothing to the hot paths (provider webhooks, sends): they
keep writing one event row, and the fan-out's cost lands in a Celery worker. Celery beat runs the
fan-out every 2 seconds (config/periodic.py), and each run drains the backlog in
batches, so a delivery starts within a couple of seconds of its event. No on-demand enqueue per
event: that would put a broker publish into every ingest and send transaction (the paths this
design keeps clean), and a burst would enqueue thousands of fan-outs that find nothing to do; a
run finds no subscription behind its log in one indexed query, so beating often costs ~2 ms.

Each delivery is a row (unique per subscription and event, so a fan-out that runs twice creates
nothing twice), claimed with a compare-and-set before each attempt (a task delivered twice sends
once), retried with capped exponential backoff on timeouts, connection errors, 5xx and 429, and
failed at once on other 4xx. Every attempt is logged in WebhookAttempt.

Signature: `X-Conversa-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" with the
subscription's secret>`, with `X-Conversa-Timestamp` (Unix seconds) and `X-Conversa-Delivery`
(the delivery id, the same on every retry and replay: receivers deduplicate on it).
"""

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from crm.models import Organization
from messaging.models import WEBHOOK_EVENT_TYPES, Event, WebhookAttempt, WebhookDelivery, WebhookSubscription
from messaging.services.outbound import retry_delay

logger = logging.getLogger(__name__)

FANOUT_BATCH = 500
USER_AGENT = "Conversa-Webhooks/1"


class WebhookSubscriptionError(ValueError):
    """The subscription's URL or events are not acceptable."""


# --- subscriptions ---------------------------------------------------------------------------------
def webhook_secret_generate() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def webhook_url_normalized(url: str) -> str:
    """Return `url` with its scheme in lower case. Raise WebhookSubscriptionError unless http(s)."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in ("http", "https") or not rest:
        raise WebhookSubscriptionError("Webhooks are delivered to http:// or https:// URLs only.")
    return f"{scheme.lower()}://{rest}"


def _validated(url: str | None, events: list[str] | None) -> str | None:
    """Check the URL and events; return the URL normalized (None when not given)."""
    if events is not None:
        unknown = sorted(set(events) - set(WEBHOOK_EVENT_TYPES))
        if unknown or not events:
            raise WebhookSubscriptionError(f"Choose event types among {', '.join(WEBHOOK_EVENT_TYPES)}.")
    return None if url is None else webhook_url_normalized(url)


@transaction.atomic
def webhook_subscription_create(
    *, organization: Organization, url: str, events: list[str], description: str = ""
) -> WebhookSubscription:
    """Subscribe `url` to the organization's events of `events` from now on.

    Raise WebhookSubscriptionError for a URL that is not http(s) or an unknown event type.
    """
    url = _validated(url, events)
    current = Organization.objects.values_list("event_sequence", flat=True).get(pk=organization.pk)
    return WebhookSubscription.objects.create(
        organization=organization,
        url=url,
        events=sorted(set(events)),
        description=description,
        secret=webhook_secret_generate(),
        cursor=current,
    )


@transaction.atomic
def webhook_subscription_update(
    *,
    subscription: WebhookSubscription,
    url: str | None = None,
    events: list[str] | None = None,
    description: str | None = None,
    is_active: bool | None = None,
) -> WebhookSubscription:
    """Change what the subscription receives; a paused one (is_active false) skips events meanwhile.

    Raise WebhookSubscriptionError as webhook_subscription_create does.
    """
    url = _validated(url, events)
    subscription = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
    fields = []
    for name, value in (("url", url), ("events", events), ("description", description)):
        if value is not None:
            setattr(subscription, name, sorted(set(value)) if name == "events" else value)
            fields.append(name)
    if is_active is not None and is_active != subscription.is_active:
        subscription.is_active = is_active
        fields.append("is_active")
        if is_active:
            # Resumed from now: what happened while paused is not delivered late and all at once.
            subscription.cursor = Organization.objects.values_list("event_sequence", flat=True).get(
                pk=subscription.organization_id
            )
            fields.append("cursor")
    if fields:
        subscription.save(update_fields=fields)
    return subscription


def webhook_subscription_delete(*, subscription: WebhookSubscription) -> None:
    """Delete the subscription with its deliveries and their log."""
    WebhookSubscription.objects.filter(pk=subscription.pk).delete()


# --- fan-out: event log → delivery rows ----------------------------------------------------------------
def webhook_fanout() -> int:
    """Create the deliveries of every active subscription behind its organization's log; return how many.

    Each subscription is drained in batches; its row lock (skipped when another run holds it) makes
    concurrent runs share the work instead of doing it twice.
    """
    behind = WebhookSubscription.objects.filter(
        is_active=True, cursor__lt=F("organization__event_sequence")
    ).values_list("pk", flat=True)
    created = 0
    for subscription_id in list(behind):
        while True:
            batch_created, more = webhook_deliveries_create(subscription_id=subscription_id)
            created += batch_created
            if not more:
                break
    return created


def webhook_deliveries_create(*, subscription_id: int) -> tuple[int, bool]:
    """Turn the next batch of the subscription's events into deliveries, sent after commit.

    Return (deliveries created, whether more events wait).
    """
    with transaction.atomic():
        subscription = (
            WebhookSubscription.objects.select_for_update(skip_locked=True)
            .filter(pk=subscription_id, is_active=True)
            .first()
        )
        if subscription is None:
            return 0, False
        events = list(
            Event.objects.filter(organization_id=subscription.organization_id, sequence__gt=subscription.cursor)
            .order_by("sequence")
            .values_list("pk", "sequence", "type")[:FANOUT_BATCH]
        )
        if not events:
            return 0, False
        wanted = {event_id: event_type for event_id, _, event_type in events if event_type in subscription.events}
        WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(
                    organization_id=subscription.organization_id,
                    subscription=subscription,
                    event_id=event_id,
                    event_type=event_type,
                )
                for event_id, event_type in wanted.items()
            ],
            ignore_conflicts=True,
        )
        subscription.cursor = events[-1][1]
        subscription.save(update_fields=["cursor"])
        delivery_ids = list(
            WebhookDelivery.objects.filter(
                subscription=subscription, event_id__in=wanted, status=WebhookDelivery.Status.PENDING
            )
            .order_by("id")
            .values_list("pk", flat=True)
        )
        transaction.on_commit(lambda: [webhook_deliver_enqueue(delivery_id) for delivery_id in delivery_ids])
    return len(delivery_ids), len(events) == FANOUT_BATCH


# --- delivery ----------------------------------------------------------------------------------------
def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """Return the hex HMAC-SHA256 of `<timestamp>.<body>` with `secret` (what receivers recompute)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def webhook_body(delivery: WebhookDelivery) -> bytes:
    """The JSON the integrator receives: the delivery id and the event as the log keeps it."""
    event = delivery.event
    body = {
        "id": delivery.pk,
        "type": event.type,
        "organization": event.organization_id,
        "cursor": event.sequence,
        "chat": event.chat_id,
        "number": event.number_id,
        "data": event.payload,
        "created_at": event.created_at.isoformat(),
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def webhook_deliver_enqueue(delivery_id: int, *, countdown: float | None = None) -> None:
    """Send the delivery task to the broker (after commit); the sweep catches what this loses."""
    from messaging.tasks.webhooks_out import webhook_deliver_task

    try:
        webhook_deliver_task.apply_async((delivery_id,), countdown=countdown)
    except Exception:
        logger.warning("could not enqueue webhook delivery %s; the sweep will", delivery_id, exc_info=True)


def webhook_host_refused(url: str) -> str:
    """Return why `url` may not be called, or "" (WEBHOOK_OUT_ALLOW_PRIVATE_NETWORKS off).

    On an installation shared by several organizations, a subscription must not reach the
    servers' own network (metadata services, databases, admin ports): every address the host
    resolves to must be public. Checked before each attempt, so a DNS change is caught too.
    """
    if settings.WEBHOOK_OUT_ALLOW_PRIVATE_NETWORKS:
        return ""
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return ""  # unresolvable: the attempt fails as a connection error and is retried
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            return f"Refused: {host} resolves to {ip}, a private address (WEBHOOK_OUT_ALLOW_PRIVATE_NETWORKS)."
    return ""


def _claim(delivery_id: int, now: datetime) -> bool:
    # A retry's task may arrive a moment before its time: a second of slack.
    return bool(
        WebhookDelivery.objects.filter(
            pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now + timedelta(seconds=1)
        ).update(status=WebhookDelivery.Status.SENDING, attempts=F("attempts") + 1, updated_at=now)
    )


def webhook_delivery_attempt(*, delivery_id: int) -> str:
    """Make one attempt of the delivery; return `skipped`, `succeeded`, `retry` or `failed`."""
    if not _claim(delivery_id, timezone.now()):
        return "skipped"
    delivery = WebhookDelivery.objects.select_related("subscription", "event").get(pk=delivery_id)
    body = webhook_body(delivery)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Conversa-Event": delivery.event_type,
        "X-Conversa-Delivery": str(delivery.pk),
        "X-Conversa-Timestamp": str(timestamp),
        "X-Conversa-Signature": "sha256="
        + webhook_signature(secret=delivery.subscription.secret, timestamp=timestamp, body=body),
    }
    status_code, error, retry_after, is_temporary = None, "", None, True
    started = time.monotonic()
    refused = webhook_host_refused(delivery.subscription.url)
    if refused:
        return _attempt_record(delivery, None, refused, 0, False, None)
    try:
        response = requests.post(
            delivery.subscription.url,
            data=body,
            headers=headers,
            timeout=(settings.PROVIDER_CONNECT_TIMEOUT, settings.WEBHOOK_OUT_TIMEOUT_SECONDS),
            allow_redirects=False,  # a redirect could carry a signed body somewhere else
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}: {response.text[:200]}"
            # 429 and 5xx are the receiver's temporary trouble; other answers will not change.
            is_temporary = status_code == 429 or status_code >= 500
            retry_after = _seconds(response.headers.get("Retry-After"))
    except requests.Timeout:
        error = f"No answer within {settings.WEBHOOK_OUT_TIMEOUT_SECONDS:g} s."
    except requests.RequestException as exception:
        error = f"{type(exception).__name__}: {str(exception)[:200]}"
    duration_ms = int((time.monotonic() - started) * 1000)
    return _attempt_record(delivery, status_code, error, duration_ms, is_temporary, retry_after)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


@transaction.atomic
def _attempt_record(delivery, status_code, error, duration_ms, is_temporary, retry_after) -> str:
    if not WebhookDelivery.objects.select_for_update().filter(pk=delivery.pk).exists():
        return "skipped"  # its subscription was deleted during the attempt
    WebhookAttempt.objects.create(delivery=delivery, status_code=status_code, duration_ms=duration_ms, error=error)
    delivery.last_status_code = status_code
    delivery.last_error = error
    now = timezone.now()
    if not error:
        outcome = "succeeded"
        delivery.status = WebhookDelivery.Status.SUCCEEDED
    elif is_temporary and delivery.attempts < settings.WEBHOOK_OUT_MAX_ATTEMPTS:
        outcome = "retry"
        delay = retry_delay(attempt=delivery.attempts, retry_after=retry_after)
        delivery.status = WebhookDelivery.Status.PENDING
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        transaction.on_commit(lambda: webhook_deliver_enqueue(delivery.pk, countdown=delay))
    else:
        outcome = "failed"
        delivery.status = WebhookDelivery.Status.FAILED
    delivery.save(update_fields=["status", "next_attempt_at", "last_status_code", "last_error", "updated_at"])
    return outcome


@transaction.atomic
def webhook_delivery_replay(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send the delivery again from its first attempt (same id and body); its log is kept."""
    delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
    if delivery.status == WebhookDelivery.Status.SENDING:
        return delivery  # an attempt is running: its outcome decides what follows
    delivery.status = WebhookDelivery.Status.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = timezone.now()
    delivery.save(update_fields=["status", "attempts", "next_attempt_at", "updated_at"])
    transaction.on_commit(lambda: webhook_deliver_enqueue(delivery.pk))
    return delivery


def webhook_deliveries_sweep(*, now: datetime | None = None) -> list[int]:
    """Re-enqueue deliveries a lost task or a dead worker left behind; return their ids.

    `sending` longer than an attempt can take means its worker died: back to pending (the attempt
    stays counted). `pending` well past its time means its task was lost.
    """
    now = now or timezone.now()
    attempt_longest = settings.PROVIDER_CONNECT_TIMEOUT + settings.WEBHOOK_OUT_TIMEOUT_SECONDS
    WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.SENDING, updated_at__lt=now - timedelta(seconds=2 * attempt_longest + 30)
    ).update(status=WebhookDelivery.Status.PENDING, next_attempt_at=now, updated_at=now)
    due = list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lt=now - timedelta(seconds=60)
        ).values_list("pk", flat=True)[:FANOUT_BATCH]
    )
    for delivery_id in due:
        webhook_deliver_enqueue(delivery_id)
    return due
