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
        ("messaging.tasks.inbound.media_pending_sweep", "inbound"),
        ("messaging.tasks.webhooks_out.webhook_fanout", "inbound"),
        ("crm.tasks.expired_sessions_clear", "bulk"),
        ("crm.tasks.provider_instance_delete", "bulk"),
        ("some.new.task", "bulk"),
    ],
)
def test_each_task_is_routed_to_its_queue(task_name, queue):
    assert queue_of(task_name) == queue


def test_every_routed_module_is_one_our_tasks_live_in():
    # A misspelt module in the routing table sends its tasks to `bulk` without a word (it happened:
    # "messaging.tasks.webhooks" for "messaging.tasks.webhooks_out").
    from config.celery import _QUEUE_OF_MODULE

    app.loader.import_default_modules()  # what a worker does at start: every app's tasks module
    modules = {name.rpartition(".")[0] for name in app.tasks}
    assert set(_QUEUE_OF_MODULE) <= modules


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
