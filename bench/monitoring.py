"""Monitoring benchmark: the dashboard's figures and the hourly statistics refresh on a big message table.

Fills its own database (`bench_monitoring` on BENCH_PG, recreated each run) with `--messages`
messages over 48 hours on 20 numbers of 10 organizations, plus a health check per number every
5 minutes, then times, each beside the raw SQL of the same work run straight through psycopg:

- `monitoring_figures` for the platform and for one organization (what one dashboard poll costs),
  against the very SQL it runs, replayed straight through psycopg;
- `hourly_statistics_refresh` (REFRESH MATERIALIZED VIEW CONCURRENTLY) against the raw GROUP BY;
- the raw throughput query without the BRIN index on created_at, to show what the index buys.

    .venv/bin/python bench/monitoring.py --messages 200000

The last line is one JSON object. Bounded: a few seconds per 100k messages.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DATABASE = "bench_monitoring"
ORGANIZATIONS = 10
NUMBERS_PER_ORGANIZATION = 2
HOURS = 48
RUNS = 15

RAW_THROUGHPUT = """
SELECT date_trunc('minute', created_at, 'UTC') AS minute,
       COUNT(*) FILTER (WHERE direction = 'in'), COUNT(*) FILTER (WHERE direction = 'out')
FROM messaging_message WHERE created_at >= now() - interval '30 minutes'
GROUP BY 1
"""
RAW_HOURLY = """
SELECT MIN(id), date_trunc('hour', created_at, 'UTC'), organization_id, number_id, COUNT(*),
       COUNT(*) FILTER (WHERE direction = 'out'), COUNT(*) FILTER (WHERE direction = 'in')
FROM messaging_message GROUP BY 2, 3, 4
"""
FILL_MESSAGES = """
INSERT INTO messaging_message (organization_id, number_id, chat_id, direction, type, text, media,
    media_mime_type, media_filename, media_state, media_source, media_error, extra, timestamp, status,
    error, attempts, max_attempts, created_at, updated_at)
SELECT chat.organization_id, chat.number_id, chat.id,
       CASE WHEN g %% 2 = 0 THEN 'in' ELSE 'out' END, 'text', 'bench', '', '', '', 'none', '', '', '{}',
       at, CASE WHEN g %% 2 = 0 THEN 'received' WHEN g %% 10 = 1 THEN 'failed' ELSE 'delivered' END,
       '', 1, 3, at, at
FROM (SELECT g, now() - (%(messages)s - g) * (interval '1 second' * %(spread)s) AS at
      FROM generate_series(1, %(messages)s) AS g) AS series
JOIN (SELECT id, organization_id, number_id, row_number() OVER (ORDER BY id) - 1 AS slot FROM crm_chat) AS chat
  ON chat.slot = series.g %% %(chats)s
ORDER BY at
"""
FILL_CHECKS = """
INSERT INTO crm_healthcheck (provider, number_id, organization_id, server_id, is_healthy, latency_ms, error, checked_at)
SELECT number.provider, number.id, number.organization_id, NULL, g %% 17 <> 0, 20 + g %% 80, '',
       now() - g * interval '5 minutes'
FROM crm_whatsappnumber AS number, generate_series(0, %(checks)s) AS g
"""


def _database_url() -> str:
    base = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
    return urlunsplit(urlsplit(base)._replace(path=f"/{BENCH_DATABASE}"))


def _database_recreate(url: str) -> None:
    import psycopg

    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {BENCH_DATABASE}")


def _workspace() -> None:
    """Organizations, connected numbers and one chat per number, through the ORM."""
    from crm.models import Chat, Contact, Organization, Plan, WhatsAppNumber

    plan = Plan.objects.order_by("id").first()
    for index in range(ORGANIZATIONS):
        organization = Organization.objects.create(name=f"Bench {index}", slug=f"bench-{index}", plan=plan)
        for slot in range(NUMBERS_PER_ORGANIZATION):
            number = WhatsAppNumber.objects.create(
                organization=organization,
                name=f"Number {slot}",
                provider="evolution" if slot == 0 else "green_api",
                instance_name=f"bench-{index}-{slot}",
                state="connected",
            )
            contact = Contact.objects.create(organization=organization, name=f"Contact {index}-{slot}")
            Chat.objects.create(organization=organization, number=number, contact=contact)


def _timed(function, runs: int = RUNS) -> float:
    """Median milliseconds of `runs` calls of `function`."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    arguments = parser.parse_args()
    url = _database_url()
    _database_recreate(url)
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    import django

    django.setup()
    import psycopg
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from crm.models import Organization
    from messaging.monitoring import MonitoringScope, monitoring_figures
    from messaging.services.statistics import hourly_statistics_refresh

    _workspace()
    chats = ORGANIZATIONS * NUMBERS_PER_ORGANIZATION
    with psycopg.connect(url, autocommit=True) as raw:
        started = time.perf_counter()
        spread = HOURS * 3600 / arguments.messages
        raw.execute(FILL_MESSAGES, {"messages": arguments.messages, "spread": spread, "chats": chats})
        raw.execute(FILL_CHECKS, {"checks": HOURS * 12})
        raw.execute("VACUUM ANALYZE messaging_message")
        raw.execute("VACUUM ANALYZE crm_healthcheck")
        fill_seconds = time.perf_counter() - started
        hourly_statistics_refresh()  # the first refresh, so the view has rows like in production

        platform = MonitoringScope(organization_ids=None)
        one = MonitoringScope(organization_ids=frozenset({Organization.objects.order_by("id").first().pk}))
        figures_platform_ms = _timed(lambda: monitoring_figures(scope=platform))
        figures_organization_ms = _timed(lambda: monitoring_figures(scope=one))
        # The baseline of a dashboard poll: the very SQL it ran, replayed straight through psycopg.
        with CaptureQueriesContext(connection) as captured:
            monitoring_figures(scope=platform)
        statements = [query["sql"] for query in captured.captured_queries]
        raw_figures_ms = _timed(lambda: [raw.execute(statement).fetchall() for statement in statements])
        raw_throughput_ms = _timed(lambda: raw.execute(RAW_THROUGHPUT).fetchall())
        refresh_ms = _timed(hourly_statistics_refresh, runs=5)
        raw_hourly_ms = _timed(lambda: raw.execute(RAW_HOURLY).fetchall(), runs=5)
        raw.execute("DROP INDEX message_created_at_brin")
        raw_throughput_without_index_ms = _timed(lambda: raw.execute(RAW_THROUGHPUT).fetchall())

    result = {
        "messages": arguments.messages,
        "fill_seconds": round(fill_seconds, 2),
        "figures_platform_p50_ms": round(figures_platform_ms, 2),
        "figures_organization_p50_ms": round(figures_organization_ms, 2),
        "raw_figures_sql_p50_ms": round(raw_figures_ms, 2),
        "figures_platform_vs_raw_sql": round(figures_platform_ms / raw_figures_ms, 2),
        "figures_queries": len(statements),
        "raw_throughput_query_p50_ms": round(raw_throughput_ms, 2),
        "raw_throughput_query_without_brin_p50_ms": round(raw_throughput_without_index_ms, 2),
        "statistics_refresh_p50_ms": round(refresh_ms, 2),
        "raw_hourly_group_by_p50_ms": round(raw_hourly_ms, 2),
        "refresh_vs_raw_group_by": round(refresh_ms / raw_hourly_ms, 2),
    }
    print(f"{arguments.messages} messages, {chats} numbers, filled in {fill_seconds:.1f} s")
    print(f"dashboard figures, platform:     p50 {figures_platform_ms:8.2f} ms")
    print(f"dashboard figures, one org:      p50 {figures_organization_ms:8.2f} ms")
    print(f"same {len(statements)} queries, raw psycopg: p50 {raw_figures_ms:8.2f} ms")
    print(f"raw throughput query (BRIN):     p50 {raw_throughput_ms:8.2f} ms")
    print(f"raw throughput query (no index): p50 {raw_throughput_without_index_ms:8.2f} ms")
    print(f"statistics refresh (CONCURRENTLY): p50 {refresh_ms:8.2f} ms vs raw GROUP BY {raw_hourly_ms:8.2f} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
