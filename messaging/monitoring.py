"""Reads behind the admin monitoring dashboard (/admin/monitoring/), all in one place.

Every figure takes a `MonitoringScope`: a superuser's covers every organization and the shared
infrastructure (provider servers, the broker's queue); an organization admin's covers only the
organizations they administer, and no shared figure at all. The page and its JSON endpoint
(messaging.admin) only call `monitoring_figures`.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from django.conf import settings
from django.db.models import Avg, Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from crm.models import HealthCheck, Organization, ProviderServer, WhatsAppNumber
from crm.selectors import numbers_active
from messaging.models import HourlyStatistic, Message

THROUGHPUT_MINUTES = 30
TOP_ORGANIZATIONS = 10
TOP_ORGANIZATIONS_HOURS = 24
# kombu's Redis transport keeps a queue's priorities 3, 6 and 9 in lists beside the plain one.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


@dataclass(frozen=True)
class MonitoringScope:
    """What a dashboard viewer may see: every organization (None) or these ones."""

    organization_ids: frozenset[int] | None

    @property
    def is_platform(self) -> bool:
        return self.organization_ids is None

    def narrow(self, queryset: QuerySet, field: str = "organization_id") -> QuerySet:
        if self.organization_ids is None:
            return queryset
        return queryset.filter(**{f"{field}__in": self.organization_ids})


def active_numbers_by_provider(*, scope: MonitoringScope) -> dict[str, int]:
    """Connected, unarchived numbers per provider."""
    rows = (
        scope.narrow(numbers_active().filter(state=WhatsAppNumber.State.CONNECTED))
        .values("provider")
        .annotate(count=Count("id"))
        .order_by("provider")
    )
    return {row["provider"]: row["count"] for row in rows}


def message_throughput(*, scope: MonitoringScope, now: datetime, minutes: int = THROUGHPUT_MINUTES) -> list[dict]:
    """Messages in and out per minute over the last `minutes` (the current minute last), oldest first."""
    current = now.astimezone(UTC).replace(second=0, microsecond=0)
    first = current - timedelta(minutes=minutes - 1)
    rows = (
        scope.narrow(Message.objects.filter(created_at__gte=first))
        .annotate(minute=Trunc("created_at", "minute", tzinfo=UTC))
        .values("minute")
        .annotate(
            inbound=Count("id", filter=Q(direction=Message.Direction.INBOUND)),
            outbound=Count("id", filter=Q(direction=Message.Direction.OUTBOUND)),
        )
        .order_by()
    )
    counts = {row["minute"]: (row["inbound"], row["outbound"]) for row in rows}
    buckets = []
    for offset in range(minutes):
        minute = first + timedelta(minutes=offset)
        inbound, outbound = counts.get(minute, (0, 0))
        buckets.append({"minute": minute.isoformat(), "in": inbound, "out": outbound})
    return buckets


def error_rates(*, scope: MonitoringScope, now: datetime) -> dict:
    """The last hour's share of failed sends and of failed health checks."""
    since = now - timedelta(hours=1)
    sends = scope.narrow(
        Message.objects.filter(
            created_at__gte=since,
            direction=Message.Direction.OUTBOUND,
            status__in=[Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ, Message.Status.FAILED],
        )
    ).aggregate(finished=Count("id"), failed=Count("id", filter=Q(status=Message.Status.FAILED)))
    checks = scope.narrow(HealthCheck.objects.filter(checked_at__gte=since)).aggregate(
        total=Count("id"), failed=Count("id", filter=Q(is_healthy=False))
    )
    return {
        "sends": {**sends, "rate": _ratio(sends["failed"], sends["finished"])},
        "health_checks": {**checks, "rate": _ratio(checks["failed"], checks["total"])},
    }


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def latency_by_provider(*, scope: MonitoringScope, now: datetime) -> dict[str, float]:
    """Average health check latency (ms) per provider over the last hour."""
    rows = (
        scope.narrow(HealthCheck.objects.filter(checked_at__gte=now - timedelta(hours=1)))
        .values("provider")
        .annotate(average=Avg("latency_ms"))
        .order_by("provider")
    )
    return {row["provider"]: round(row["average"], 1) for row in rows}


def hourly_statistics(*, scope: MonitoringScope, since: datetime | None = None) -> QuerySet[HourlyStatistic]:
    """Messages per hour and number (as of the last statistics refresh), in scope."""
    rows = scope.narrow(HourlyStatistic.objects.all())
    return rows.filter(hour__gte=since) if since is not None else rows


def top_organizations(*, scope: MonitoringScope, now: datetime, limit: int = TOP_ORGANIZATIONS) -> list[dict]:
    """The organizations with the most messages over the last 24 hours, from the hourly statistics."""
    since = (now - timedelta(hours=TOP_ORGANIZATIONS_HOURS)).replace(minute=0, second=0, microsecond=0)
    rows = list(
        hourly_statistics(scope=scope, since=since)
        .values("organization_id")
        .annotate(messages=Sum("messages_total"))
        .order_by("-messages", "organization_id")[:limit]
    )
    names = dict(Organization.objects.filter(pk__in=[row["organization_id"] for row in rows]).values_list("id", "name"))
    return [
        {"id": row["organization_id"], "name": names.get(row["organization_id"], ""), "messages": row["messages"]}
        for row in rows
    ]


def numbers_silent(*, scope: MonitoringScope) -> list[dict]:
    """Connected numbers restarted for silence, or flagged as silent after that restart."""
    numbers = scope.narrow(
        numbers_active().filter(state=WhatsAppNumber.State.CONNECTED, silence_restarted_at__isnull=False)
    ).select_related("organization")
    return [
        {
            **_number_row(number),
            "status": "flagged" if number.silent_since else "restarted",
            "since": (number.silent_since or number.silence_restarted_at).isoformat(),
        }
        for number in numbers.order_by("organization__name", "name")
    ]


def numbers_unhealthy(*, scope: MonitoringScope) -> list[dict]:
    """Connected numbers whose latest health check failed, with its error."""
    latest = HealthCheck.objects.filter(number=OuterRef("pk")).order_by("-checked_at", "-id")
    numbers = (
        scope.narrow(numbers_active().filter(state=WhatsAppNumber.State.CONNECTED))
        .annotate(
            latest_healthy=Subquery(latest.values("is_healthy")[:1]), latest_error=Subquery(latest.values("error")[:1])
        )
        .filter(latest_healthy=False)
        .select_related("organization")
    )
    return [
        {**_number_row(number), "error": number.latest_error}
        for number in numbers.order_by("organization__name", "name")
    ]


def _number_row(number: WhatsAppNumber) -> dict:
    return {
        "id": number.pk,
        "name": number.name,
        "phone": number.phone,
        "provider": number.provider,
        "organization": number.organization.name,
    }


def servers_unhealthy() -> list[dict]:
    """Provider servers whose latest check failed (shared infrastructure: platform scope only)."""
    servers = ProviderServer.objects.filter(is_healthy=False).order_by("name")
    return [
        {
            "id": server.pk,
            "name": server.name,
            "provider": server.provider,
            "error": server.last_error,
            "checked_at": server.last_checked_at.isoformat() if server.last_checked_at else None,
        }
        for server in servers
    ]


def queue_depth() -> dict[str, int]:
    """Tasks waiting in each Celery queue on the Redis broker (LLEN of its lists), by queue name."""
    import config.celery

    # A test harness that put every task on one private queue has turned routing off.
    queues = (
        config.celery.QUEUES if config.celery.queue_routing_enabled else (config.celery.app.conf.task_default_queue,)
    )
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        with client.pipeline(transaction=False) as pipeline:
            for queue in queues:
                for suffix in _PRIORITY_SUFFIXES:
                    pipeline.llen(f"{queue}{suffix}")
            lengths = pipeline.execute()
    finally:
        client.close()
    per_queue = len(_PRIORITY_SUFFIXES)
    return {queue: sum(lengths[index * per_queue : (index + 1) * per_queue]) for index, queue in enumerate(queues)}


def monitoring_figures(*, scope: MonitoringScope, now: datetime | None = None) -> dict:
    """Every figure of the dashboard, as JSON-ready data."""
    now = now or timezone.now()
    figures = {
        "generated_at": now.isoformat(),
        "scope": "platform" if scope.is_platform else "organization",
        "active_numbers_by_provider": active_numbers_by_provider(scope=scope),
        "throughput": message_throughput(scope=scope, now=now),
        "error_rates": error_rates(scope=scope, now=now),
        "latency_by_provider": latency_by_provider(scope=scope, now=now),
        "top_organizations": top_organizations(scope=scope, now=now),
        "silent_numbers": numbers_silent(scope=scope),
        "unhealthy_numbers": numbers_unhealthy(scope=scope),
    }
    if scope.is_platform:
        figures["unhealthy_servers"] = servers_unhealthy()
        figures["queue_depth"] = queue_depth()
    return figures
