"""Hourly statistics: the PostgreSQL materialized view and the SQLite table give the direct counts."""

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from messaging.models import HourlyStatistic, Message
from messaging.monitoring import MonitoringScope, hourly_statistics
from messaging.services.statistics import hourly_statistics_refresh
from tests.factories import ChatFactory, MessageFactory
from tests.messaging.embedded_probe import probe_run

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def _messages_at(chat, *, when: datetime, inbound: int, outbound: int) -> None:
    for _ in range(inbound):
        message = MessageFactory(chat=chat)
        Message.objects.filter(pk=message.pk).update(created_at=when)
    for _ in range(outbound):
        message = MessageFactory(chat=chat, direction=Message.Direction.OUTBOUND, status=Message.Status.DELIVERED)
        Message.objects.filter(pk=message.pk).update(created_at=when)


def _direct_counts() -> dict:
    """Per (number, UTC hour): [total, sent, received], counted in Python from the message rows."""
    counts: dict = {}
    for number_id, created_at, direction in Message.objects.values_list("number_id", "created_at", "direction"):
        hour = created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        row = counts.setdefault((number_id, hour), Counter())
        row["total"] += 1
        row["sent" if direction == Message.Direction.OUTBOUND else "received"] += 1
    return {key: (row["total"], row["sent"], row["received"]) for key, row in counts.items()}


def _view_counts(rows) -> dict:
    return {(row.number_id, row.hour): (row.messages_total, row.messages_sent, row.messages_received) for row in rows}


def test_the_view_equals_a_direct_count_per_hour_and_number():
    now = timezone.now().replace(minute=30)
    first, second = ChatFactory(), ChatFactory()
    _messages_at(first, when=now, inbound=3, outbound=2)
    _messages_at(first, when=now - timedelta(hours=1, minutes=5), inbound=1, outbound=4)
    _messages_at(first, when=now.replace(minute=59, second=59), inbound=1, outbound=0)  # same hour, its last second
    _messages_at(second, when=now - timedelta(days=3), inbound=0, outbound=2)

    assert hourly_statistics_refresh() == 3

    rows = list(HourlyStatistic.objects.all())
    assert _view_counts(rows) == _direct_counts()
    assert sum(row.messages_total for row in rows) == Message.objects.count() == 13
    assert {row.organization_id for row in rows} == {first.organization_id, second.organization_id}


def test_new_messages_appear_at_the_next_refresh_and_the_selector_is_scoped():
    chat, other = ChatFactory(), ChatFactory()
    _messages_at(chat, when=timezone.now(), inbound=1, outbound=0)
    hourly_statistics_refresh()
    _messages_at(chat, when=timezone.now(), inbound=2, outbound=1)
    _messages_at(other, when=timezone.now(), inbound=5, outbound=0)

    mine = MonitoringScope(organization_ids=frozenset({chat.organization_id}))
    assert [row.messages_total for row in hourly_statistics(scope=mine)] == [1]
    hourly_statistics_refresh()  # CONCURRENTLY, on a view that has rows

    assert [(row.messages_total, row.messages_sent) for row in hourly_statistics(scope=mine)] == [(4, 1)]
    assert _view_counts(HourlyStatistic.objects.all()) == _direct_counts()


def test_the_embedded_sqlite_table_gives_the_same_counts(tmp_path):
    outcome = probe_run("tests.messaging.statistics_probe", tmp_path / "var")
    assert outcome["vendor"] == "sqlite"
    assert outcome["rows"] >= 2
    assert outcome["view_equals_direct_count"] is True
    assert outcome["throughput_in_last_minute"] == outcome["inserted_in_last_minute"]
    assert outcome["top_organization_messages"] == outcome["messages_today"]
