"""Hourly statistics per number (a materialized view on PostgreSQL, a table on SQLite) and a BRIN
index on messages' arrival time for the monitoring dashboard's last-minutes and last-hour figures.

The view is refreshed CONCURRENTLY by the statistics beat, which needs the unique index on
(number_id, hour). SQLite (embedded mode) has no materialized views: the same columns live in a
plain table the beat refills with INSERT ... SELECT (messaging.services.statistics).
"""

from django.db import migrations, models

POSTGRESQL_CREATE = [
    # Hours are cut in UTC whatever the session's time zone, so every refresh agrees.
    """
    CREATE MATERIALIZED VIEW messaging_hourly_statistics AS
    SELECT MIN(id) AS id,
           date_trunc('hour', created_at, 'UTC') AS hour,
           organization_id,
           number_id,
           COUNT(*) AS messages_total,
           COUNT(*) FILTER (WHERE direction = 'out') AS messages_sent,
           COUNT(*) FILTER (WHERE direction = 'in') AS messages_received
    FROM messaging_message
    GROUP BY date_trunc('hour', created_at, 'UTC'), organization_id, number_id
    """,
    "CREATE UNIQUE INDEX hourly_statistics_number_hour ON messaging_hourly_statistics (number_id, hour)",
    "CREATE INDEX hourly_statistics_organization_hour ON messaging_hourly_statistics (organization_id, hour)",
    "CREATE INDEX hourly_statistics_hour ON messaging_hourly_statistics (hour)",
    # Messages are appended in time order, so a BRIN index (a few pages, next to nothing per
    # insert) finds the last minutes' rows of the biggest table without a B-tree's write cost.
    "CREATE INDEX message_created_at_brin ON messaging_message USING brin (created_at)",
]
POSTGRESQL_DROP = [
    "DROP INDEX IF EXISTS message_created_at_brin",
    "DROP MATERIALIZED VIEW IF EXISTS messaging_hourly_statistics",
]
SQLITE_CREATE = [
    """
    CREATE TABLE messaging_hourly_statistics (
        id integer NOT NULL PRIMARY KEY,
        hour datetime NOT NULL,
        organization_id bigint NOT NULL,
        number_id bigint NOT NULL,
        messages_total integer NOT NULL,
        messages_sent integer NOT NULL,
        messages_received integer NOT NULL,
        UNIQUE (number_id, hour)
    )
    """,
    "CREATE INDEX hourly_statistics_hour ON messaging_hourly_statistics (hour)",
]
SQLITE_DROP = ["DROP TABLE IF EXISTS messaging_hourly_statistics"]


def _run(postgresql: list[str], sqlite: list[str]):
    def apply(apps, schema_editor):
        statements = postgresql if schema_editor.connection.vendor == "postgresql" else sqlite
        for statement in statements:
            schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0008_health"),
        ("messaging", "0006_api"),
    ]

    operations = [
        migrations.CreateModel(
            name="HourlyStatistic",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("hour", models.DateTimeField()),
                ("messages_total", models.PositiveIntegerField()),
                ("messages_sent", models.PositiveIntegerField()),
                ("messages_received", models.PositiveIntegerField()),
            ],
            options={
                "db_table": "messaging_hourly_statistics",
                "ordering": ["hour", "number"],
                "managed": False,
            },
        ),
        migrations.RunPython(
            _run(POSTGRESQL_CREATE, SQLITE_CREATE), _run(POSTGRESQL_DROP, SQLITE_DROP), elidable=False
        ),
    ]
