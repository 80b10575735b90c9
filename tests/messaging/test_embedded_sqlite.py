"""Embedded mode (`make run` with nothing configured) runs the same outbox and ingest code on SQLite."""

from tests.messaging.embedded_probe import probe_run


def test_send_deliver_sweep_and_ingest_work_on_sqlite(tmp_path):
    outcome = probe_run("tests.messaging.embedded_probe", tmp_path / "var")
    assert outcome == {
        "same_message_on_replay": True,
        "delivered": ["sent", "sent"],
        "swept": [],
        "webhook_statuses": [200, 200],
        "inbound_stored": 1,
    }
