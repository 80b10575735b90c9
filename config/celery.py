"""The Celery app shared by web, worker and beat."""

import os
import time

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_process_shutdown
from django.db import close_old_connections

from config import log_context, tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("conversa")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
log_context.celery_signals_connect()

# Celery's Django fix-up closes every database connection before and after each task, and in a
# prefork child it closes Django's whole psycopg pool too: every task paid a new PostgreSQL
# connection (measured: delivery went from ~7 ms in process to ~26 ms in a worker). With a reuse
# limit the fix-up leaves the pool alone; `connections_release` below still hands each task's
# connection back to the pool and drops broken ones, which is what the fix-up's closing was for.
app.conf.CELERY_DB_REUSE_MAX = 1_000_000_000


@task_postrun.connect
def connections_release(**kwargs) -> None:
    """Return the task's database connection to the pool (or drop it if broken or in error)."""
    if not getattr(kwargs.get("task").request, "is_eager", False):
        close_old_connections()


@worker_process_init.connect
def tracing_start(**kwargs) -> None:
    """Trace each pool process's tasks (only with OTEL_EXPORTER_OTLP_ENDPOINT set; see config/tracing.py)."""
    tracing.tracing_setup()


@worker_process_shutdown.connect
def tracing_stop(**kwargs) -> None:
    """Export the spans a pool process still holds before it exits."""
    tracing.tracing_flush()


# --- Queues -----------------------------------------------------------------------------------------
# Three queues, each with its own workers (config/launcher.py, deploy/), so a backlog in one never
# starves another: agents' sends must not wait behind a hundred thousand cleanup jobs, nor behind a
# burst of media downloads (field notes: Chatwoot's webhooks starve behind bulk work, #15857).
QUEUE_SENDS = "sends"  # outbound delivery and the provider calls agents wait for (connect, log out)
QUEUE_INBOUND = "inbound"  # side work of inbound traffic: media downloads, webhooks to integrators
QUEUE_BULK = "bulk"  # maintenance and bulk jobs: sweeps of old data, statistics, health, cleanup
QUEUES = (QUEUE_SENDS, QUEUE_INBOUND, QUEUE_BULK)
_QUEUE_OF_MODULE = {
    "messaging.tasks.outbound": QUEUE_SENDS,
    "messaging.tasks.numbers": QUEUE_SENDS,
    "messaging.tasks.inbound": QUEUE_INBOUND,
    "messaging.tasks.webhooks_out": QUEUE_INBOUND,
}
# A test harness that puts every task of a run on one private queue turns routing off.
queue_routing_enabled = True


def task_queue(name, args, kwargs, options, task=None, **extra):
    """Celery router: the queue of a task, by the module it lives in; anything else is bulk work."""
    if not queue_routing_enabled:
        return None
    module = name.rpartition(".")[0]
    return {"queue": _QUEUE_OF_MODULE.get(module, QUEUE_BULK)}


app.conf.task_routes = (task_queue,)
app.conf.task_default_queue = QUEUE_BULK


# --- Bulk work yields the machine -------------------------------------------------------------------
# A low CPU priority is not enough on a small machine (bench/backlog.py): a bulk worker busy on a
# backlog still keeps the second core and PostgreSQL busy, and that shows in the p95 of ingest and
# sends. So after each bulk task the worker rests in proportion to the time the task took, which
# holds bulk work to BULK_WORK_SHARE of one worker process's time; a backlog drains more slowly and
# the foreground keeps the machine. Set it to 1 on machines that only run bulk workers.
_bulk_task_started: dict[str, float] = {}


@task_prerun.connect
def _bulk_task_start(task_id=None, task=None, **kwargs) -> None:
    if _is_bulk(task):
        _bulk_task_started[task_id] = time.monotonic()


@task_postrun.connect
def _bulk_task_rest(task_id=None, task=None, **kwargs) -> None:
    started = _bulk_task_started.pop(task_id, None)
    if started is None:
        return
    from django.conf import settings

    rest = bulk_rest_seconds(worked=time.monotonic() - started, share=settings.BULK_WORK_SHARE)
    if rest:
        time.sleep(rest)


def bulk_rest_seconds(*, worked: float, share: float) -> float:
    """The rest after `worked` seconds of bulk work that keeps bulk work to `share` of the time."""
    if not 0 < share < 1:
        return 0.0
    return worked * (1 / share - 1)


def _is_bulk(task) -> bool:
    request = getattr(task, "request", None)
    if request is None or getattr(request, "is_eager", False):
        return False
    return (request.delivery_info or {}).get("routing_key") == QUEUE_BULK
