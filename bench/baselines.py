"""Raw baselines every benchmark measures in its own run, so results are ratios, not absolutes.

- `psycopg_insert_rate`: single-row INSERT + COMMIT in a loop, straight through psycopg;
- `redis_publish_round_trip`: PUBLISH on one connection, received by a SUBSCRIBE on another.
"""

import statistics
import time
import uuid

import psycopg
import redis


def percentile(samples: list[float], share: float) -> float:
    """Return the `share` (0..1) percentile of `samples`, nearest-rank."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))
    return ordered[index]


def psycopg_insert_rate(database_url: str, rows: int = 2000) -> dict:
    """Insert `rows` single rows, committing each, into a scratch table; return rows/s and p50 ms."""
    table = f"bench_baseline_{uuid.uuid4().hex[:8]}"
    latencies = []
    with psycopg.connect(database_url, autocommit=False) as connection:
        connection.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, body text, at timestamptz)")
        connection.commit()
        try:
            started = time.perf_counter()
            for index in range(rows):
                before = time.perf_counter()
                connection.execute(f"INSERT INTO {table} (body, at) VALUES (%s, now())", (f"row {index}",))  # noqa: S608
                connection.commit()
                latencies.append((time.perf_counter() - before) * 1000)
            elapsed = time.perf_counter() - started
        finally:
            connection.execute(f"DROP TABLE {table}")
            connection.commit()
    return {"rows_per_second": rows / elapsed, "p50_ms": statistics.median(latencies)}


def redis_publish_round_trip(redis_url: str, messages: int = 2000) -> dict:
    """Publish `messages` one at a time and time each until the subscriber has it; return p50/p95 ms."""
    channel = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    publisher = redis.Redis.from_url(redis_url)
    subscriber = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(channel)
    subscriber.get_message(timeout=1)  # the subscribe confirmation
    latencies = []
    try:
        for _ in range(messages):
            before = time.perf_counter()
            publisher.publish(channel, b"x")
            while subscriber.get_message(timeout=1) is None:
                pass
            latencies.append((time.perf_counter() - before) * 1000)
    finally:
        subscriber.close()
        publisher.close()
    return {"p50_ms": percentile(latencies, 0.50), "p95_ms": percentile(latencies, 0.95)}


def celery_noop_round_trip(redis_url: str, tasks: int = 500) -> dict:
    """Send `tasks` no-op tasks through the running workers; return tasks/s end to end and serial p50 ms.

    The workers must load this module (`celery -A config worker --include bench.baselines`); each
    task pushes to a Redis list, which is how this side learns it ran.
    """
    key = f"bench-noop-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    try:
        latencies = []
        for _ in range(50):  # serial round trips, one at a time
            before = time.perf_counter()
            noop_task.delay(key)
            client.blpop([key], timeout=10)
            latencies.append((time.perf_counter() - before) * 1000)
        started = time.perf_counter()
        for _ in range(tasks):
            noop_task.delay(key)
        received = 0
        while received < tasks:
            if client.blpop([key], timeout=30) is None:
                raise RuntimeError("no-op tasks stopped arriving")
            received += 1
        elapsed = time.perf_counter() - started
    finally:
        client.delete(key)
        client.close()
    return {"tasks_per_second": tasks / elapsed, "p50_ms": percentile(latencies, 0.50)}


def _noop_task():
    from celery import shared_task

    @shared_task(name="bench.baselines.noop", ignore_result=True)
    def noop(key: str) -> None:
        from django.conf import settings

        global _worker_redis
        if _worker_redis is None:
            _worker_redis = redis.Redis.from_url(settings.REDIS_URL)
        _worker_redis.rpush(key, 1)

    return noop


_worker_redis = None
noop_task = _noop_task()
