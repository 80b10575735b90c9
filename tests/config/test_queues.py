"""Tasks go to their own queue (sends, inbound, bulk), so a backlog in one never starves another."""

import pytest

from config.celery import app


def queue_of(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("messaging.tasks.outbound.message_deliver", "sends"),
        ("messaging.tasks.outbound.outbox_sweep", "sends"),
        ("messaging.tasks.numbers.number_connect_task", "sends"),
        ("messaging.tasks.inbound.media_download", "inbound"),
        ("crm.tasks.expired_sessions_clear", "bulk"),
        ("crm.tasks.provider_instance_delete", "bulk"),
        ("some.new.task", "bulk"),
    ],
)
def test_each_task_is_routed_to_its_queue(task_name, queue):
    assert queue_of(task_name) == queue


def test_every_registered_task_of_ours_has_a_queue_its_worker_consumes():
    from config.celery import QUEUES

    app.loader.import_default_modules()  # what a worker does at start: every app's tasks module
    ours = [name for name in app.tasks if name.split(".")[0] in {"crm", "messaging"}]
    assert ours, "no tasks registered"
    assert {queue_of(name) for name in ours} <= set(QUEUES)


class _Request:
    def __init__(self, queue: str, *, is_eager: bool = False):
        self.delivery_info = {"routing_key": queue}
        self.is_eager = is_eager


class _Task:
    def __init__(self, queue: str, **request):
        self.request = _Request(queue, **request)


def test_only_tasks_taken_from_the_bulk_queue_rest():
    from config.celery import _is_bulk

    assert _is_bulk(_Task("bulk"))
    assert not _is_bulk(_Task("sends"))
    assert not _is_bulk(_Task("inbound"))
    assert not _is_bulk(_Task("bulk", is_eager=True))  # run in the caller's process: never slowed


def test_the_rest_keeps_bulk_work_to_its_share_of_the_time():
    from config.celery import bulk_rest_seconds

    assert bulk_rest_seconds(worked=0.2, share=0.5) == 0.2  # worked half the time
    assert round(bulk_rest_seconds(worked=0.1, share=0.15), 4) == round(0.1 * (1 / 0.15 - 1), 4)
    assert bulk_rest_seconds(worked=0.2, share=1) == 0  # a bulk-only machine: no rest
    assert bulk_rest_seconds(worked=0.2, share=0) == 0  # off
