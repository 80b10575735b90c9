"""The health beat: every provider server and every connected number checked through its provider.

`health_check_beat` (every 5 minutes, config/periodic.py) only enqueues one task per server and
per connected number, so one hanging provider costs one worker one timeout, not the whole beat.
Each check stores a `HealthCheck` row (the dashboard's latency and error figures), updates the
server's `is_healthy`/`last_*` (placement skips unhealthy servers) and feeds the server's circuit
breaker: a server found dead opens its circuit at once, for every process, so sends stop paying a
timeout each until the breaker's trial call finds it back.

Silent connections (field notes #7: the top gateway complaint; no gateway detects it): a number its
provider reports as connected, that received nothing (no inbound message, no delivery or read
receipt) for SILENT_AFTER_MINUTES while a send of ours is still unacknowledged for that long, is
restarted through its provider once; if it is still silent at the next check it is flagged
(`silent_since`) for its organization's admins. Hearing from it again clears both. Each restart,
flag and recovery is a `number.state` event, written under the organization's event-log lock.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.text import Truncator

from crm.models import HealthCheck, ProviderServer, WhatsAppNumber
from crm.selectors import number_provider_target, numbers_active, server_breaker_key, server_provider_target
from messaging.events import event_log_lock, number_state_event
from messaging.models import Message
from messaging.services.inbound import number_connection_update
from messaging.services.numbers import number_failure_report
from providers.base import (
    CONNECTION_STATES,
    STATE_CONNECTED,
    STATE_CONNECTING,
    STATE_WAITING_FOR_QR_SCAN,
    ConnectionUpdate,
    ProviderError,
)
from providers.breaker import breaker_trip
from providers.registry import adapter_for

logger = logging.getLogger(__name__)

ERROR_LENGTH = 1000
# A send older than this that never got its receipt says more about its recipient (a phone off
# for days) than about our session: only recent sends count as unacknowledged.
UNACKNOWLEDGED_LOOKBACK = timedelta(days=1)
# A restart needs a moment to take effect: a second check right after it (two beats' tasks at
# once) must not flag the number before the restart could help.
RESTART_GRACE = timedelta(minutes=1)
# A check still queued after this is dropped: the next beat's check replaces it.
CHECK_EXPIRES_SECONDS = 5 * 60


# --- the beat -------------------------------------------------------------------------------------
def health_check_beat() -> dict[str, int]:
    """Enqueue a check of every provider server and every connected, unarchived number."""
    from messaging.tasks.health import number_health_check_task, server_health_check_task

    server_ids = list(ProviderServer.objects.order_by("id").values_list("id", flat=True))
    number_ids = list(
        numbers_active().filter(state=WhatsAppNumber.State.CONNECTED).order_by("id").values_list("id", flat=True)
    )
    for server_id in server_ids:
        server_health_check_task.apply_async((server_id,), expires=CHECK_EXPIRES_SECONDS)
    for number_id in number_ids:
        number_health_check_task.apply_async((number_id,), expires=CHECK_EXPIRES_SECONDS)
    logger.info("health beat: %s server(s) and %s number(s) to check", len(server_ids), len(number_ids))
    return {"servers": len(server_ids), "numbers": len(number_ids)}


# --- servers --------------------------------------------------------------------------------------
def server_health_check(*, server_id: int) -> HealthCheck | None:
    """Probe one provider server, record the result and feed its circuit breaker.

    Return the stored check, or None when the server was deleted meanwhile.
    """
    server = ProviderServer.objects.filter(pk=server_id).first()
    if server is None:
        return None
    result = adapter_for(server.provider).health(server_provider_target(server))
    if not result.is_healthy and not result.permanent:
        # Unreachable, timing out or failing with 5xx: the server is down for every caller.
        breaker_trip(server_breaker_key(server))
    now = timezone.now()
    error = Truncator(result.error).chars(ERROR_LENGTH)
    with transaction.atomic():
        check = HealthCheck.objects.create(
            provider=server.provider,
            server=server,
            is_healthy=result.is_healthy,
            latency_ms=result.latency_ms,
            error=error,
            checked_at=now,
        )
        ProviderServer.objects.filter(pk=server.pk).update(
            is_healthy=result.is_healthy, last_checked_at=now, last_latency_ms=result.latency_ms, last_error=error
        )
    if not result.is_healthy:
        logger.warning("provider server %s is unhealthy: %s", server, error)
    return check


# --- numbers --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NumberCheckOutcome:
    check: HealthCheck
    silence: str  # "quiet" (nothing to do), "restarted", "flagged", "recovered"


def number_health_check(*, number_id: int) -> NumberCheckOutcome | None:
    """Ask the number's provider for its state, record it, and handle a silent connection.

    Return None when the number is gone, archived or no longer connected.
    """
    number = numbers_active().select_related("server").filter(pk=number_id, state=STATE_CONNECTED).first()
    if number is None:
        return None
    target = number_provider_target(number)
    started = time.monotonic()
    try:
        state = adapter_for(number.provider).connection_state(target)
        error = "" if state == STATE_CONNECTED else f"The provider reports the number as {state}."
    except ProviderError as failure:
        state, error = None, failure.message
    latency_ms = round((time.monotonic() - started) * 1000)
    with transaction.atomic():
        event_log_lock(number.organization_id)
        number = WhatsAppNumber.objects.select_for_update().filter(pk=number_id).first()
        if number is None:
            return None
        check = HealthCheck.objects.create(
            provider=number.provider,
            server_id=number.server_id,
            number=number,
            organization_id=number.organization_id,
            is_healthy=state == STATE_CONNECTED,
            latency_ms=latency_ms,
            error=Truncator(error).chars(ERROR_LENGTH),
            checked_at=timezone.now(),
        )
        if state is not None and state != STATE_CONNECTED and state in CONNECTION_STATES:
            # The provider knows better than our last webhook: record the state it reports. A
            # session that ended is no longer silent; one reconnecting (after our restart) may be.
            if state not in (STATE_CONNECTING, STATE_WAITING_FOR_QR_SCAN):
                _silence_clear(number)
            number_connection_update(
                number=number, event=ConnectionUpdate(state=state, reason="Reported by the health check.")
            )
            return NumberCheckOutcome(check=check, silence="quiet")
        silence = _silence_step(number, now=check.checked_at) if state == STATE_CONNECTED else "quiet"
    if silence == "restarted":
        _number_restart(number)
    return NumberCheckOutcome(check=check, silence=silence)


def number_is_silent(*, number_id: int, now: datetime) -> bool:
    """Whether nothing arrived for SILENT_AFTER_MINUTES while a send of ours stays unacknowledged.

    "Arrived" is an inbound message or a delivery/read receipt of ours; "unacknowledged" is an
    outbound message still `sent` (not delivered) SILENT_AFTER_MINUTES after it was sent.
    Connection webhooks do not count as hearing from it: a silent session still says "open".
    """
    cutoff = now - timedelta(minutes=settings.SILENT_AFTER_MINUTES)
    counts = Message.objects.filter(number_id=number_id, created_at__gt=cutoff - UNACKNOWLEDGED_LOOKBACK).aggregate(
        heard=Count(
            "id",
            filter=Q(direction=Message.Direction.INBOUND, created_at__gt=cutoff)
            | Q(
                direction=Message.Direction.OUTBOUND,
                status__in=[Message.Status.DELIVERED, Message.Status.READ],
                updated_at__gt=cutoff,
            ),
        ),
        unacknowledged=Count(
            "id", filter=Q(direction=Message.Direction.OUTBOUND, status=Message.Status.SENT, updated_at__lte=cutoff)
        ),
    )
    return counts["heard"] == 0 and counts["unacknowledged"] > 0


def _silence_step(number: WhatsAppNumber, *, now: datetime) -> str:
    """Move the number one step: restart once, then flag; clear when heard from again.

    Runs under the organization's event-log lock and the number's row lock, so two checks of one
    number at once (a slow task and the next beat's) take turns and restart it once.
    """
    if not number_is_silent(number_id=number.pk, now=now):
        if number.silence_restarted_at is None:
            return "quiet"
        _silence_clear(number)
        _silence_event(number, "Heard from again: no longer silent.")
        return "recovered"
    minutes = settings.SILENT_AFTER_MINUTES
    if number.silence_restarted_at is None:
        number.silence_restarted_at = now
        number.save(update_fields=["silence_restarted_at"])
        _silence_event(number, f"Silent for {minutes} minutes with unacknowledged sends: restarting the session.")
        return "restarted"
    if number.silent_since is None:
        if now - number.silence_restarted_at < RESTART_GRACE:
            return "quiet"  # restarted a moment ago: the next check decides
        number.silent_since = now
        number.save(update_fields=["silent_since"])
        _silence_event(number, "Still silent after a restart: reconnect it (scan the QR code again).")
        return "flagged"
    return "quiet"  # flagged already: admins know, and a restart loop would not help


def _silence_clear(number: WhatsAppNumber) -> None:
    if number.silence_restarted_at is not None or number.silent_since is not None:
        number.silence_restarted_at = number.silent_since = None
        number.save(update_fields=["silence_restarted_at", "silent_since"])


def _silence_event(number: WhatsAppNumber, reason: str) -> None:
    number_state_event(
        number,
        reason=reason,
        silence_restarted_at=number.silence_restarted_at.isoformat() if number.silence_restarted_at else None,
        silent_since=number.silent_since.isoformat() if number.silent_since else None,
    )


def _number_restart(number: WhatsAppNumber) -> None:
    """Restart the number's session through its provider (after the decision committed)."""
    try:
        adapter_for(number.provider).restart(number_provider_target(number))
    except ProviderError as error:
        # Not retried: the next check finds it still silent and flags it, which is what an admin
        # needs to hear when even a restart cannot be done.
        logger.warning("number %s: restart after silence failed: %s", number.pk, error)
        number_failure_report(number_id=number.pk, reason=f"Could not restart the silent session: {error.message}")
        return
    logger.info("number %s: silent session restarted", number.pk)
