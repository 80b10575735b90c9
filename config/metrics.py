"""Prometheus metrics at `/metrics` (Bearer METRICS_TOKEN), one view of every process's figures.

Counters and the send-latency histogram are kept in Redis, so the web processes and every Celery
worker add to the same figures and a scrape of any web process sees them all (prometheus_client's
own per-process registry would show one process's share). Gauges are read at scrape time: queue
depth from the broker, open WebSockets, provider health and numbers by state from the database.
"""

import hmac
import logging

import redis
from django.conf import settings
from django.db.models import Count
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

logger = logging.getLogger(__name__)

# Seconds from accepting a send to the provider taking it.
SEND_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def _redis() -> redis.Redis:
    from crm.cache import redis_client  # the process's one client (crm.cache), made on first use

    return redis_client()


def _key(name: str) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:metrics:{name}"


def messages_counted(direction: str, count: int = 1) -> None:
    """Count messages stored inbound ("in") or sent to a provider ("out"); never raises."""
    try:
        _redis().hincrby(_key("messages_total"), direction, count)
    except redis.RedisError:
        logger.warning("metrics: messages_total not counted", exc_info=True)


def send_latency_observed(seconds: float) -> None:
    """Record one accept-to-sent time in the histogram; never raises."""
    bucket = next((str(edge) for edge in SEND_LATENCY_BUCKETS if seconds <= edge), "+Inf")
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.hincrby(_key("send_latency"), bucket, 1)
        pipe.hincrbyfloat(_key("send_latency"), "sum", seconds)
        pipe.execute()
    except redis.RedisError:
        logger.warning("metrics: send latency not observed", exc_info=True)


class ConversaCollector:
    """Every figure, read when Prometheus scrapes."""

    def collect(self):
        client = _redis()
        messages = CounterMetricFamily(
            "conversa_messages", "Messages stored inbound and sent out.", labels=["direction"]
        )
        totals = client.hgetall(_key("messages_total"))
        for direction in ("in", "out"):
            messages.add_metric([direction], int(totals.get(direction.encode(), 0)))
        yield messages
        yield self._send_latency(client.hgetall(_key("send_latency")))
        yield self._queue_depth()
        from messaging.views import websocket_open_count

        yield GaugeMetricFamily("conversa_websocket_connections", "Open WebSocket connections.", websocket_open_count())
        yield from self._provider_health()

    @staticmethod
    def _send_latency(raw: dict) -> HistogramMetricFamily:
        histogram = HistogramMetricFamily(
            "conversa_send_latency_seconds", "From accepting a send to the provider taking it."
        )
        cumulative, buckets = 0, []
        for edge in (*[str(edge) for edge in SEND_LATENCY_BUCKETS], "+Inf"):
            cumulative += int(raw.get(edge.encode(), 0))
            buckets.append((edge, cumulative))
        histogram.add_metric([], buckets, sum_value=float(raw.get(b"sum", 0)))
        return histogram

    @staticmethod
    def _queue_depth() -> GaugeMetricFamily:
        from messaging.monitoring import queue_depth

        gauge = GaugeMetricFamily("conversa_queue_depth", "Tasks waiting in each Celery queue.", labels=["queue"])
        for queue, depth in queue_depth().items():
            gauge.add_metric([queue], depth)
        return gauge

    @staticmethod
    def _provider_health():
        from crm.models import ProviderServer, WhatsAppNumber

        healthy = GaugeMetricFamily(
            "conversa_provider_server_healthy", "1 when the provider server passed its last check.",
            labels=["server", "provider"],
        )  # fmt: skip
        for name, provider, is_healthy in ProviderServer.objects.values_list("name", "provider", "is_healthy"):
            healthy.add_metric([name, provider], 1 if is_healthy else 0)
        yield healthy
        numbers = GaugeMetricFamily(
            "conversa_numbers", "WhatsApp numbers by provider and state.", labels=["provider", "state"]
        )
        rows = WhatsAppNumber.objects.values("provider", "state").annotate(count=Count("id")).order_by()
        for row in rows:
            numbers.add_metric([row["provider"], row["state"]], row["count"])
        yield numbers


@never_cache
@require_GET
def metrics(request) -> HttpResponse:
    """The Prometheus scrape; 404 unless METRICS_TOKEN is set and sent as a Bearer token."""
    token = settings.METRICS_TOKEN
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token:
        return HttpResponse(status=404)
    if not hmac.compare_digest(offered.encode(), token.encode()):
        return HttpResponse("A valid Bearer token is required.", status=401, content_type="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConversaCollector())
    return HttpResponse(generate_latest(registry), content_type="text/plain; version=0.0.4; charset=utf-8")
