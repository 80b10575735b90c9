"""The periodic tasks Conversa runs, declared in code and created as django-celery-beat rows.

`manage.py periodic_tasks_register` (run by `make run` and by every deploy) creates the row of each
entry below that the database lacks, and never changes a row that exists: an operator's edits in
the admin (another interval, disabled, another queue) survive every restart and deploy. To change
a schedule for everyone, edit the row in the admin or delete it and register again.

Celery's own `beat_schedule` setting is deliberately unused: django-celery-beat's DatabaseScheduler
writes those entries over the matching rows on every beat start, which would undo admin edits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

DAY = 24 * 60 * 60


@dataclass(frozen=True)
class Crontab:
    """A cron-style schedule; fields take cron syntax ("*", "0,30", "1-5")."""

    minute: str = "0"
    hour: str = "*"
    day_of_week: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"
    timezone: str = "UTC"


@dataclass(frozen=True)
class PeriodicTaskSpec:
    """One periodic task: the Celery task to run, exactly one schedule, and its send options.

    `every_seconds` runs the task that long after its previous run (kept in the row, so restarts do
    not reset the clock); `crontab` runs it at fixed wall-clock times.
    """

    task: str
    every_seconds: int | None = None
    crontab: Crontab | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    # A run still queued this long after it was sent is dropped; the next run does the same work.
    expire_seconds: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if (self.every_seconds is None) == (self.crontab is None):
            raise ValueError(f"{self.task}: give exactly one of every_seconds and crontab")
        if self.every_seconds is not None and self.every_seconds < 1:
            raise ValueError(f"{self.task}: every_seconds must be at least 1")


# Row name (what the admin shows, and the key that decides whether a row exists) → what to run.
PERIODIC_TASKS: dict[str, PeriodicTaskSpec] = {
    "crm.expired_sessions_clear": PeriodicTaskSpec(
        task="crm.tasks.expired_sessions_clear",
        every_seconds=DAY,
        expire_seconds=DAY // 2,
        description="Delete login sessions past their expiry date; Django never removes them by itself.",
    ),
    "messaging.media_pending_sweep": PeriodicTaskSpec(
        task="messaging.tasks.inbound.media_pending_sweep",
        every_seconds=10 * 60,
        expire_seconds=10 * 60,
        description="Re-enqueue media downloads a lost task left pending; fail those pending far too long.",
    ),
    "messaging.outbox_sweep": PeriodicTaskSpec(
        task="messaging.tasks.outbound.outbox_sweep",
        every_seconds=30,
        expire_seconds=30,
        description=(
            "Re-enqueue outbound messages stuck in queued or sending (a lost task, a killed worker) "
            "and scheduled messages that came due."
        ),
    ),
    # --- health, cleanup, statistics (issue: health and monitoring) ---
    "messaging.health_check": PeriodicTaskSpec(
        task="messaging.tasks.health.health_check_beat",
        every_seconds=5 * 60,
        expire_seconds=5 * 60,
        description=(
            "Check every provider server and connected number through its provider; restart, then flag, "
            "numbers that are connected but silent."
        ),
    ),
    "messaging.hourly_statistics_refresh": PeriodicTaskSpec(
        task="messaging.tasks.statistics.hourly_statistics_refresh",
        every_seconds=5 * 60,
        expire_seconds=5 * 60,
        description="Recompute the messages per hour and number that the monitoring dashboard reads.",
    ),
    "messaging.numbers_archive": PeriodicTaskSpec(
        task="messaging.tasks.cleanup.numbers_archive",
        crontab=Crontab(minute="17", hour="3"),
        expire_seconds=DAY // 2,
        description=(
            "Remove self-hosted numbers disconnected and unseen for NUMBER_ARCHIVE_AFTER_DAYS from their "
            "provider server and archive them (their history stays)."
        ),
    ),
    "messaging.health_checks_prune": PeriodicTaskSpec(
        task="messaging.tasks.cleanup.health_checks_prune",
        crontab=Crontab(minute="37", hour="3"),
        expire_seconds=DAY // 2,
        description="Delete health check results older than HEALTH_RETENTION_DAYS, in batches.",
    ),
    "messaging.webhook_deliveries_prune": PeriodicTaskSpec(
        task="messaging.tasks.cleanup.webhook_deliveries_prune",
        crontab=Crontab(minute="57", hour="3"),
        expire_seconds=DAY // 2,
        description="Delete succeeded webhook deliveries older than WEBHOOK_LOG_RETENTION_DAYS, in batches.",
    ),
    "messaging.webhook_fanout": PeriodicTaskSpec(
        task="messaging.tasks.webhooks_out.webhook_fanout",
        every_seconds=2,
        expire_seconds=2,
        description=(
            "Turn new events of the organizations' logs into signed webhook deliveries to integrators, "
            "and re-enqueue deliveries a lost task left behind."
        ),
    ),
}


ROUTINE_SECONDS = 60  # tasks sent more often than this are routine: their runs are not logged one by one


def routine_task_names() -> set[str]:
    """The row names of the periodic tasks that run every few seconds (see RoutineBeatFilter)."""
    return {
        name for name, spec in PERIODIC_TASKS.items() if spec.every_seconds and spec.every_seconds < ROUTINE_SECONDS
    }


def periodic_tasks_register(registry: dict[str, PeriodicTaskSpec] | None = None) -> list[str]:
    """Create the django-celery-beat row of every registered task that has none; return the names created.

    Existing rows are left exactly as they are, whatever their schedule, options or enabled flag.
    """
    from django_celery_beat.models import PeriodicTask

    created = []
    for name, spec in (PERIODIC_TASKS if registry is None else registry).items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        try:
            with transaction.atomic():
                PeriodicTask.objects.create(
                    name=name,
                    task=spec.task,
                    kwargs=json.dumps(spec.kwargs),
                    queue=spec.queue,
                    expire_seconds=spec.expire_seconds,
                    description=spec.description,
                    **_schedule_fields(spec),
                )
        except IntegrityError:
            # Another process (a second deploy step, a parallel run) created it first: it exists.
            continue
        created.append(name)
    return created


def _schedule_fields(spec: PeriodicTaskSpec) -> dict[str, Any]:
    """Return the schedule row for `spec`, reusing an identical one (schedules are shared rows)."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule

    if spec.crontab is not None:
        values = {
            "minute": spec.crontab.minute,
            "hour": spec.crontab.hour,
            "day_of_week": spec.crontab.day_of_week,
            "day_of_month": spec.crontab.day_of_month,
            "month_of_year": spec.crontab.month_of_year,
            "timezone": spec.crontab.timezone,
        }
        # No unique constraint on these tables, so duplicates may exist: take any, never fail.
        crontab = CrontabSchedule.objects.filter(**values).first() or CrontabSchedule.objects.create(**values)
        return {"crontab": crontab}
    every, period = _interval_readable(spec.every_seconds)
    interval = IntervalSchedule.objects.filter(every=every, period=period).first()
    return {"interval": interval or IntervalSchedule.objects.create(every=every, period=period)}


def _interval_readable(seconds: int) -> tuple[int, str]:
    """Express `seconds` in the largest whole unit, so the admin shows "every 1 day", not 86400 seconds."""
    from django_celery_beat.models import IntervalSchedule

    for unit_seconds, period in (
        (DAY, IntervalSchedule.DAYS),
        (60 * 60, IntervalSchedule.HOURS),
        (60, IntervalSchedule.MINUTES),
    ):
        if seconds % unit_seconds == 0:
            return seconds // unit_seconds, period
    return seconds, IntervalSchedule.SECONDS
