"""Backlog benchmark (issue 9): webhook ingest and send latency with 100,000 bulk jobs queued.

Starts web and one Celery worker per queue from config/deploy/Procfile, whose lines are the ones
`make run` starts (sends: concurrency 2, inbound: 1, bulk: 1 under `nice -n 10`), plus the fake
Evolution server, against PostgreSQL database `bench_backlog` (created and migrated here) and Redis
db 7. It measures, first with the bulk queue empty and then, in the same run, with `--jobs` bulk
jobs queued (a per-chat statistics refresh, `chat_statistics_refresh` below):

- webhook ingest latency: POST /webhooks/fake/<instance>/ → 200 (the message is stored), paced;
- send latency: API POST /api/v1/chats/<id>/messages/ (accepted) → the message row `sent` by the
  sends worker through the fake Evolution server, paced;
- raw baselines in each block: psycopg INSERT+COMMIT p50 and the Redis publish round trip; and a
  third condition, an idle-priority busy loop with nothing queued, which shows what a busy second
  core costs this machine by itself, whatever runs on it.

The conditions take turns in short blocks (the backlog parked under another Redis key meanwhile),
so drift in the machine's other load touches them alike. The target: p50 and p95 of both with the
backlog within 1.2x of the blocks without it. The last line is one JSON object with every figure.

    .venv/bin/python bench/backlog.py [--jobs 100000] [--webhooks 300] [--sends 200]
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from celery import shared_task

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATABASE = "bench_backlog"
TARGET_RATIO = 1.2
# Blocks of each condition, taking turns: nothing queued; the backlog queued (the bulk worker busy on
# it); no backlog but an idle-priority busy loop (the raw baseline: the cost of a busy second core).
CONDITIONS = ("without", "with", "burner")
WEBHOOKS_PER_SECOND = 25
SENDS_PER_SECOND = 10


@shared_task(name="bench.backlog.chat_statistics_refresh", ignore_result=True)
def chat_statistics_refresh(chat_id: int) -> None:
    """A maintenance-like bulk job: recount one chat's messages and cache the figures."""
    from django.core.cache import cache
    from django.db.models import Count, Max

    from messaging.models import Message

    figures = Message.objects.filter(chat_id=chat_id).aggregate(messages=Count("id"), last=Max("created_at"))
    cache.set(f"bench-backlog:chat:{chat_id}", figures["messages"], timeout=600)


def _environment_point(redis_url: str, port: int) -> None:
    """Aim bench/outbound.py's helpers (which this reuses) at this benchmark's database and Redis."""
    from bench import outbound

    outbound.DATABASE = DATABASE
    outbound.ENV.update(
        {
            "DATABASE_URL": f"{outbound.PG}/{DATABASE}",
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "CACHE_KEY_PREFIX": "bench-backlog",
            "CONVERSA_HOST": "127.0.0.1",
            "PORT": str(port),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # The Procfile's `python` is this interpreter, as the venv's bin/ first on PATH makes it in production.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.pathsep.join(os.get_exec_path())}",
        }
    )
    os.environ.update(outbound.ENV)


def _queues_empty(redis_url: str) -> None:
    import redis

    from config.celery import QUEUES

    client = redis.Redis.from_url(redis_url)
    for queue in QUEUES:
        client.delete(queue, *client.keys(f"{queue}\x06*"))
    client.delete("unacked", "unacked_index")
    client.close()


def _processes_start() -> list[subprocess.Popen]:
    """Web and the three workers, each exactly as its Procfile line says (workers also load the bench tasks).

    Like `make run` (config/launcher.py), each runs in its own process group but in this session: with
    Linux's autogroup scheduling, a process in a session of its own competes as an equal with every
    other session whatever its nice value, so the bulk worker's `nice -n 10` would do nothing.
    """
    from bench.outbound import ENV
    from config.deploy.procfile import procfile_entries

    entries = procfile_entries()
    include = " --include bench.backlog,bench.baselines"
    commands = [entries["web"], *(entries[queue] + include for queue in ("sends", "inbound", "bulk"))]
    return [
        subprocess.Popen(  # noqa: S603 (the Procfile's own commands)
            ["/bin/sh", "-c", command],
            cwd=ROOT,
            env=ENV,
            process_group=0,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for command in commands
    ]


def _fake_number_create(chat_id: int) -> tuple[str, str]:
    """A number on the built-in fake provider in the bench organization; return its instance and secret."""
    from crm.models import Chat, WhatsAppNumber

    organization = Chat.objects.get(pk=chat_id).organization
    number = WhatsAppNumber.objects.create(
        organization=organization, name="Bench webhooks", provider="fake", instance_name=f"bench-fake-{time.time_ns()}"
    )
    return number.instance_name, number.webhook_secret


def _fixtures_and_client(fake_url: str, api_key: str, chats: int, base_url: str):
    """bench/outbound.py's fixtures and API client: (session factory, instance, chat ids).

    Its fixtures give a user to log in as; with the integrator API's keys (main, after the API issue)
    they give an API key and `api_session` instead. Either way the client is the benchmark's own.
    """
    from bench import outbound

    created = outbound.fixtures_create(fake_url, api_key, chats)
    if hasattr(outbound, "api_session"):
        key, instance, chat_ids = created
        return (lambda: outbound.api_session(key)), instance, chat_ids
    username, password, instance, chat_ids = created
    return (lambda: outbound.login(base_url, username, password)), instance, chat_ids


def _paced(count: int, per_second: float, action) -> None:
    started = time.perf_counter()
    for index in range(count):
        delay = started + index / per_second - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        action(index)


def webhook_latencies(url: str, secret: str, count: int, label: str) -> list[float]:
    """Post `count` new inbound messages, paced; return each POST's latency in ms (all must answer 200)."""
    import requests

    from bench.inbound import _post

    session = requests.Session()
    latencies = []

    def post(index: int) -> None:
        before = time.perf_counter()
        status = _post(session, url, secret, f"{label}-{index}", f"{label} {index}")
        latencies.append((time.perf_counter() - before) * 1000)
        if status != 200:
            raise RuntimeError(f"webhook answered {status}")

    _paced(count, WEBHOOKS_PER_SECOND, post)
    return latencies


def send_latencies(session, base_url: str, chat_ids: list[int], count: int, label: str) -> list[float]:
    """Send `count` messages through the API, paced; return accept → `sent` of each in ms."""
    from bench.outbound import _all_sent_wait, _post_send
    from messaging.models import Message

    posted_at: dict[int, float] = {}

    def send(index: int) -> None:
        before = time.time()
        _, message_id = _post_send(session, base_url, chat_ids[index % len(chat_ids)], label, index)
        posted_at[message_id] = before

    _paced(count, SENDS_PER_SECOND, send)
    _all_sent_wait(list(posted_at))
    # The worker stamps updated_at when it records `sent` (no status comes after: auto_status is off).
    sent_at = dict(Message.objects.filter(pk__in=posted_at).values_list("pk", "updated_at"))
    return [(sent_at[pk].timestamp() - before) * 1000 for pk, before in posted_at.items()]


def block_measure(context: dict, label: str, webhooks: int, sends: int) -> dict:
    """One block: webhook ingest, then sends, then the raw baselines; return the raw samples."""
    from bench.baselines import psycopg_insert_rate, redis_publish_round_trip
    from bench.outbound import ENV

    return {
        "webhook_ms": webhook_latencies(context["webhook_url"], context["secret"], webhooks, f"{label}-in"),
        "send_ms": send_latencies(context["session"], context["base_url"], context["chat_ids"], sends, f"{label}-out"),
        "insert_p50_ms": psycopg_insert_rate(ENV["DATABASE_URL"].replace("postgres://", "postgresql://", 1), 200)[
            "p50_ms"
        ],
        "redis_p50_ms": redis_publish_round_trip(ENV["REDIS_URL"], 200)["p50_ms"],
    }


def condition_figures(blocks: list[dict]) -> dict:
    """Percentiles over every block of one condition (with or without the backlog)."""
    import statistics

    from bench.baselines import percentile

    webhooks = [value for block in blocks for value in block["webhook_ms"]]
    sends = [value for block in blocks for value in block["send_ms"]]
    return {
        "webhook_p50_ms": round(percentile(webhooks, 0.50), 2),
        "webhook_p95_ms": round(percentile(webhooks, 0.95), 2),
        "send_p50_ms": round(percentile(sends, 0.50), 2),
        "send_p95_ms": round(percentile(sends, 0.95), 2),
        "baseline_insert_p50_ms": round(statistics.median(block["insert_p50_ms"] for block in blocks), 3),
        "baseline_redis_round_trip_p50_ms": round(statistics.median(block["redis_p50_ms"] for block in blocks), 3),
    }


class Backlog:
    """The queued bulk jobs, parked under another key (an O(1) RENAME) while a block runs without them."""

    PARKED = "bench-backlog-parked"

    def __init__(self, redis_url: str):
        import redis

        self.client = redis.Redis.from_url(redis_url)

    def park(self) -> None:
        if self.client.exists("bulk"):
            self.client.rename("bulk", self.PARKED)

    def restore(self) -> None:
        if self.client.exists(self.PARKED):
            self.client.rename(self.PARKED, "bulk")

    def discard(self) -> None:
        self.client.delete(self.PARKED)
        self.client.close()


class IdleBurner:
    """The raw baseline: one busy loop under SCHED_IDLE, the most an idle-priority bulk worker can
    take from this machine (a core's worth). Whatever it costs the web, no scheduling can save."""

    def __init__(self):
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        code = "import os\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True: pass"
        self.process = subprocess.Popen([sys.executable, "-c", code])  # noqa: S603 (our own interpreter)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def backlog_enqueue(chat_ids: list[int], jobs: int) -> float:
    """Queue `jobs` bulk jobs through one shared producer connection; return the seconds it took."""
    from config.celery import app

    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for index in range(jobs):
            chat_statistics_refresh.apply_async((chat_ids[index % len(chat_ids)],), producer=producer)
    return time.perf_counter() - started


def bulk_depth() -> int:
    from messaging.monitoring import queue_depth

    return queue_depth()["bulk"]


class DepthSampler:
    """Sample the bulk queue's depth every second while a phase runs (the backlog must last it)."""

    def __init__(self):
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(bulk_depth())
            self._stop.wait(1.0)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=5)


def _ratios(without: dict, backlog: dict) -> dict:
    keys = ("webhook_p50_ms", "webhook_p95_ms", "send_p50_ms", "send_p95_ms")
    return {key.replace("_ms", "_ratio"): round(backlog[key] / without[key], 3) for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000, help="bulk jobs queued for the backlog phase")
    parser.add_argument("--webhooks", type=int, default=400, help="webhooks posted per condition")
    parser.add_argument("--sends", type=int, default=200, help="messages sent per condition")
    parser.add_argument("--chats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4, help="alternating blocks of each condition")
    args = parser.parse_args()

    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
    from bench.outbound import free_port

    port = free_port()
    _environment_point(redis_url, port)
    from bench import outbound

    _queues_empty(redis_url)
    outbound.database_prepare()
    api_key = f"bench-{time.time_ns()}"
    fake, fake_url = outbound.fake_start(api_key)
    processes = [fake]
    base_url = f"http://127.0.0.1:{port}"
    try:
        session_open, instance, chat_ids = _fixtures_and_client(fake_url, api_key, args.chats, base_url)
        outbound.fake_faults(fake_url)  # no faults: the provider answers at once
        import requests

        requests.post(f"{fake_url}/_fake/scan/{instance}", json={}, timeout=10).raise_for_status()
        fake_instance, secret = _fake_number_create(chat_ids[0])
        processes.extend(_processes_start())
        outbound.http_wait(f"{base_url}/accounts/login/", timeout=60)
        from bench.baselines import celery_noop_round_trip

        noop = celery_noop_round_trip(redis_url, tasks=200)  # the bulk worker is up (no-ops go to bulk)
        context = {
            "session": session_open(),
            "base_url": base_url,
            "chat_ids": chat_ids,
            "webhook_url": f"{base_url}/webhooks/fake/{fake_instance}/",
            "secret": secret,
        }
        # Warm every path (pools, imports, the sends worker's children) before measuring.
        webhook_latencies(context["webhook_url"], secret, 50, "warm-in")
        send_latencies(context["session"], base_url, chat_ids, 30, "warm-out")

        enqueue_seconds = backlog_enqueue(chat_ids, args.jobs)
        depth_start = bulk_depth()
        print(
            f"queued {args.jobs} bulk jobs in {enqueue_seconds:.1f} s "
            f"({args.jobs / max(enqueue_seconds, 1e-9):.0f}/s); {depth_start} still waiting",
            flush=True,
        )
        parked = Backlog(redis_url)
        parked.park()  # until its first block
        burner = IdleBurner()
        blocks: dict[str, list[dict]] = {condition: [] for condition in CONDITIONS}
        depth_samples: list[int] = []
        jobs_done = 0
        webhooks, sends = args.webhooks // args.rounds, args.sends // args.rounds
        # The conditions take turns, each round starting one further, so a change in the machine's
        # other load (other developers, PostgreSQL's own work) touches every condition alike.
        for round_index in range(args.rounds):
            for turn in range(len(CONDITIONS)):
                condition = CONDITIONS[(round_index + turn) % len(CONDITIONS)]
                label = f"r{round_index}-{condition}"
                if condition == "with":
                    parked.restore()
                    before = bulk_depth()
                    with DepthSampler() as depth:
                        blocks[condition].append(block_measure(context, label, webhooks, sends))
                    depth_samples.extend(depth.samples)
                    jobs_done += before - bulk_depth()
                    parked.park()
                elif condition == "burner":
                    burner.start()
                    try:
                        blocks[condition].append(block_measure(context, label, webhooks, sends))
                    finally:
                        burner.stop()
                else:
                    blocks[condition].append(block_measure(context, label, webhooks, sends))
                print(f"  round {round_index + 1}/{args.rounds}: {condition} done", flush=True)
        parked.restore()
        depth_end = bulk_depth()
        parked.discard()
    finally:
        for process in reversed(processes):
            outbound.process_stop(process)
        _queues_empty(redis_url)

    without, backlog = condition_figures(blocks["without"]), condition_figures(blocks["with"])
    burning = condition_figures(blocks["burner"])
    ratios = _ratios(without, backlog)
    burner_ratios = _ratios(without, burning)
    met = all(value <= TARGET_RATIO for value in ratios.values())
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "jobs": args.jobs,
        "webhooks_per_condition": args.webhooks,
        "sends_per_condition": args.sends,
        "enqueue_seconds": round(enqueue_seconds, 2),
        "rounds": args.rounds,
        "bulk_depth_at_start": depth_start,
        "bulk_depth_min_during_backlog_blocks": min(depth_samples) if depth_samples else None,
        "bulk_depth_at_end": depth_end,
        "bulk_jobs_done_during_backlog_blocks": jobs_done,
        "celery_noop_tasks_per_second": round(noop["tasks_per_second"], 1),
        "without_backlog": without,
        "with_backlog": backlog,
        "with_idle_burner": burning,
        "ratios": ratios,
        "burner_ratios": burner_ratios,
        "target_ratio": TARGET_RATIO,
        "target_met": met,
    }
    for name in ("webhook", "send"):
        print(
            f"{name}: p50 {without[f'{name}_p50_ms']} -> {backlog[f'{name}_p50_ms']} ms "
            f"({ratios[f'{name}_p50_ratio']}x), p95 {without[f'{name}_p95_ms']} -> {backlog[f'{name}_p95_ms']} ms "
            f"({ratios[f'{name}_p95_ratio']}x); target <= {TARGET_RATIO}x. With an idle-priority busy loop "
            f"instead: p50 {burner_ratios[f'{name}_p50_ratio']}x, p95 {burner_ratios[f'{name}_p95_ratio']}x"
        )
    print(
        f"baselines: psycopg INSERT+COMMIT p50 {without['baseline_insert_p50_ms']} -> "
        f"{backlog['baseline_insert_p50_ms']} ms, Redis round trip p50 {without['baseline_redis_round_trip_p50_ms']}"
        f" -> {backlog['baseline_redis_round_trip_p50_ms']} ms; bulk queue {depth_start} -> {depth_end} "
        f"({jobs_done} jobs run during the backlog blocks)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
