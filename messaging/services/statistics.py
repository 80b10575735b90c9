"""The hourly statistics beat: messages per hour and number (messaging.models.HourlyStatistic).

PostgreSQL keeps them in a materialized view (migration 0007) refreshed CONCURRENTLY, so the
dashboard reads the old figures while the new ones are computed and never waits on the refresh.
SQLite (embedded mode) has no materialized views: the same table is refilled in one transaction
with the same grouping.
"""

import logging

from django.db import connection, transaction

logger = logging.getLogger(__name__)

_SQLITE_REFILL = [
    "DELETE FROM messaging_hourly_statistics",
    """
    INSERT INTO messaging_hourly_statistics
        (id, hour, organization_id, number_id, messages_total, messages_sent, messages_received)
    SELECT MIN(id),
           strftime('%Y-%m-%d %H:00:00', created_at),
           organization_id,
           number_id,
           COUNT(*),
           SUM(CASE WHEN direction = 'out' THEN 1 ELSE 0 END),
           SUM(CASE WHEN direction = 'in' THEN 1 ELSE 0 END)
    FROM messaging_message
    GROUP BY strftime('%Y-%m-%d %H:00:00', created_at), organization_id, number_id
    """,
]


def hourly_statistics_refresh() -> int:
    """Recompute the hourly statistics from the messages; return how many rows they have now."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY messaging_hourly_statistics")
        else:
            for statement in _SQLITE_REFILL:
                cursor.execute(statement)
        cursor.execute("SELECT COUNT(*) FROM messaging_hourly_statistics")
        (rows,) = cursor.fetchone()
    logger.info("statistics: hourly statistics refreshed, %s row(s)", rows)
    return rows
