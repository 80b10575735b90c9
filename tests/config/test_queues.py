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
