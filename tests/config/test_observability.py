"""Log lines carry the ids of what they are about; /metrics shows every process's figures, to its token only."""

import json
import logging

import pytest

from config.log_context import ContextFilter, JsonFormatter
from messaging.models import Message
from messaging.services.outbound import message_send
from messaging.tasks.outbound import message_deliver_task
from tests.factories import ChatFactory, WhatsAppNumberFactory

pytestmark = pytest.mark.django_db


class JsonLines(logging.Handler):
    """The production handler's filter and formatter, keeping the lines for the test to read."""

    def __init__(self):
        super().__init__()
        self.addFilter(ContextFilter())
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record):
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def json_lines():
    handler = JsonLines()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous_level)


def test_a_webhook_log_line_carries_the_request_and_organization_ids(client, json_lines):
    number = WhatsAppNumberFactory()
    response = client.post(
        f"/webhooks/fake/{number.instance_name}/",
        data=b"{}",
        content_type="application/json",
        headers={"Authorization": "Bearer wrong", "X-Request-ID": "req-42"},
    )
    assert response.status_code == 403
    assert response["X-Request-ID"] == "req-42"
    line = next(line for line in json_lines.lines if "rejected" in line["message"])
    assert (line["request_id"], line["organization_id"], line["level"]) == ("req-42", number.organization_id, "INFO")


def test_a_request_without_an_id_gets_one_and_a_bad_one_is_replaced(client):
    generated = client.get("/healthz")["X-Request-ID"]
    assert len(generated) == 32
    assert client.get("/healthz", headers={"X-Request-ID": "<script>"})["X-Request-ID"] != "<script>"


def test_a_delivery_log_line_carries_the_task_and_message_ids(json_lines):
    chat = ChatFactory(contact__phone="+5511987654321")  # the fake refuses numbers ending in 0000
    message, _ = message_send(organization=chat.organization, chat=chat, text="hello")
    result = message_deliver_task.apply(args=(message.pk,))
    assert result.get() == "sent"
    line = next(line for line in json_lines.lines if line["message"] == f"message {message.pk}: sent")
    assert line["message_id"] == message.pk
    assert line["task"] == "messaging.tasks.outbound.message_deliver"
    assert line["task_id"] == result.id


def test_metrics_are_off_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404


def test_metrics_refuse_a_wrong_token(client, settings):
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_metrics_count_messages_in_and_out_with_send_latency(client, settings, django_capture_on_commit_callbacks):
    settings.METRICS_TOKEN = "s3cret"
    number = WhatsAppNumberFactory()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            f"/webhooks/fake/{number.instance_name}/",
            data=json.dumps({"event": "message", "id": "m1", "from": "+5511912345678", "text": "oi"}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {number.webhook_secret}"},
        )
    chat = Message.objects.get().chat
    with django_capture_on_commit_callbacks(execute=True):
        message, _ = message_send(organization=chat.organization, chat=chat, text="reply")
    with django_capture_on_commit_callbacks(execute=True):
        message_deliver_task.apply(args=(message.pk,))
    text = client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).content.decode()
    assert 'conversa_messages_total{direction="in"} 1.0' in text
    assert 'conversa_messages_total{direction="out"} 1.0' in text
    assert "conversa_send_latency_seconds_count 1.0" in text
    assert 'conversa_send_latency_seconds_bucket{le="+Inf"} 1.0' in text
    for queue in ("sends", "inbound", "bulk"):
        assert f'conversa_queue_depth{{queue="{queue}"}}' in text
    assert "conversa_websocket_connections" in text
    assert 'conversa_numbers{provider="fake",state="connected"} 1.0' in text  # provisioned by the send


def test_routine_beat_runs_are_not_logged_one_by_one_but_others_are():
    from config.log_context import RoutineBeatFilter

    def beat_line(name: str) -> logging.LogRecord:
        return logging.LogRecord(
            "celery.beat", logging.INFO, __file__, 1, "Scheduler: Sending due task %s (%s)", (name, "x"), None
        )

    quiet = RoutineBeatFilter()
    assert not quiet.filter(beat_line("messaging.webhook_fanout"))  # every 2 s
    assert quiet.filter(beat_line("messaging.health_check"))  # every 5 minutes
    assert quiet.filter(logging.LogRecord("celery.beat", logging.INFO, __file__, 1, "beat: Starting...", (), None))
