from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from config.celery import app
from config.periodic import PERIODIC_TASKS, Crontab, PeriodicTaskSpec, periodic_tasks_register
from crm.tasks import expired_sessions_clear

pytestmark = pytest.mark.django_db


def _register() -> str:
    output = StringIO()
    call_command("periodic_tasks_register", stdout=output)
    return output.getvalue()


def test_register_creates_a_row_for_every_registered_task():
    output = _register()

    for name, spec in PERIODIC_TASKS.items():
        row = PeriodicTask.objects.get(name=name)
        assert row.task == spec.task
        assert row.enabled
        assert f"Periodic task {name}: created" in output
    sessions_row = PeriodicTask.objects.get(task="crm.tasks.expired_sessions_clear")
    assert (sessions_row.interval.every, sessions_row.interval.period) == (1, IntervalSchedule.DAYS)
    assert sessions_row.crontab is None


def test_register_twice_creates_nothing_more():
    _register()
    counts = (PeriodicTask.objects.count(), IntervalSchedule.objects.count(), CrontabSchedule.objects.count())

    output = _register()

    assert (PeriodicTask.objects.count(), IntervalSchedule.objects.count(), CrontabSchedule.objects.count()) == counts
    assert "created" not in output
    assert "exists, left as it is" in output


def test_register_keeps_an_interval_and_flag_edited_in_the_admin():
    _register()
    row = PeriodicTask.objects.get(task="crm.tasks.expired_sessions_clear")
    row.interval = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
    row.enabled = False
    row.save()

    _register()

    row.refresh_from_db()
    assert (row.interval.every, row.interval.period) == (5, IntervalSchedule.MINUTES)
    assert row.enabled is False
    assert PeriodicTask.objects.filter(task="crm.tasks.expired_sessions_clear").count() == 1


def test_register_recreates_a_deleted_row():
    _register()
    PeriodicTask.objects.filter(task="crm.tasks.expired_sessions_clear").delete()

    _register()

    assert PeriodicTask.objects.filter(task="crm.tasks.expired_sessions_clear").count() == 1


def test_register_creates_crontab_and_interval_schedules_with_their_options():
    registry = {
        "test.nightly": PeriodicTaskSpec(
            task="crm.tasks.expired_sessions_clear",
            crontab=Crontab(minute="30", hour="2", day_of_week="1-5"),
            kwargs={"limit": 10},
            queue="maintenance",
            expire_seconds=600,
        ),
        "test.every-90-seconds": PeriodicTaskSpec(task="crm.tasks.expired_sessions_clear", every_seconds=90),
    }

    assert periodic_tasks_register(registry) == ["test.nightly", "test.every-90-seconds"]

    nightly = PeriodicTask.objects.get(name="test.nightly")
    assert (nightly.crontab.minute, nightly.crontab.hour, nightly.crontab.day_of_week) == ("30", "2", "1-5")
    assert str(nightly.crontab.timezone) == "UTC"
    assert nightly.interval is None
    assert (nightly.kwargs, nightly.queue, nightly.expire_seconds) == ('{"limit": 10}', "maintenance", 600)
    frequent = PeriodicTask.objects.get(name="test.every-90-seconds")
    assert (frequent.interval.every, frequent.interval.period) == (90, IntervalSchedule.SECONDS)
    assert periodic_tasks_register(registry) == []


def test_a_spec_needs_exactly_one_schedule():
    with pytest.raises(ValueError, match="exactly one"):
        PeriodicTaskSpec(task="crm.tasks.expired_sessions_clear")
    with pytest.raises(ValueError, match="exactly one"):
        PeriodicTaskSpec(task="crm.tasks.expired_sessions_clear", every_seconds=60, crontab=Crontab())


def test_every_registered_task_is_a_celery_task_the_worker_knows():
    app.loader.import_default_modules()

    for spec in PERIODIC_TASKS.values():
        assert spec.task in app.tasks


def test_expired_sessions_clear_deletes_expired_sessions_and_keeps_live_ones():
    live = SessionStore()
    live["user"] = "still here"
    live.create()
    expired = SessionStore()
    expired.create()
    Session.objects.filter(session_key=expired.session_key).update(expire_date=timezone.now() - timedelta(seconds=1))

    expired_sessions_clear.apply().get()

    assert set(Session.objects.values_list("session_key", flat=True)) == {live.session_key}
