"""Run by test_statistics in a fresh process on SQLite: refresh the hourly statistics, read the dashboard.

Prints one JSON line. Usage: python -m tests.messaging.statistics_probe
"""

import json
from collections import Counter
from datetime import UTC, timedelta

from tests.messaging.embedded_probe import sqlite_workspace


def main() -> None:
    workspace = sqlite_workspace()
    from django.db import connection
    from django.utils import timezone

    from crm.models import Chat
    from messaging.models import HourlyStatistic, Message
    from messaging.monitoring import MonitoringScope, monitoring_figures
    from messaging.services.statistics import hourly_statistics_refresh

    chat = Chat.objects.filter(organization=workspace.organization).first()
    now = timezone.now()
    for index, direction in enumerate(["in", "out", "in"]):
        Message.objects.create(
            organization=workspace.organization,
            number=chat.number,
            chat=chat,
            direction=direction,
            status="received" if direction == "in" else "delivered",
            text=f"probe {index}",
        )
    old = Message.objects.create(
        organization=workspace.organization, number=chat.number, chat=chat, direction="in", status="received"
    )
    Message.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=2))

    rows = hourly_statistics_refresh()
    direct: dict = {}
    for number_id, created_at, direction in Message.objects.values_list("number_id", "created_at", "direction"):
        hour = created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        counter = direct.setdefault((number_id, hour), Counter())
        counter["total"] += 1
        counter["out" if direction == "out" else "in"] += 1
    view = {
        (row.number_id, row.hour): (row.messages_total, row.messages_sent, row.messages_received)
        for row in HourlyStatistic.objects.all()
    }
    # The dashboard as of the last insert, so a minute turning over meanwhile changes nothing.
    moment = Message.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    figures = monitoring_figures(scope=MonitoringScope(organization_ids=None), now=moment)
    last_minute = figures["throughput"][-1]
    since = (moment - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
    print(
        json.dumps(
            {
                "vendor": connection.vendor,
                "rows": rows,
                "view_equals_direct_count": view == {key: (c["total"], c["out"], c["in"]) for key, c in direct.items()},
                "throughput_in_last_minute": last_minute["in"] + last_minute["out"],
                "inserted_in_last_minute": Message.objects.filter(
                    created_at__gte=moment.replace(second=0, microsecond=0)
                ).count(),
                "top_organization_messages": figures["top_organizations"][0]["messages"],
                "messages_today": Message.objects.filter(created_at__gte=since).count(),
            }
        )
    )


if __name__ == "__main__":
    main()
