"""API benchmark: what API-key authentication plus rate limiting add to history reads and sends.

Runs the same view (a chat's history page, GET; a send, POST) two ways in one run: as served at
`/api/v1/` (Bearer key lookup, Redis rate-limit count, X-RateLimit headers) and at `/bench/v1/`
with the caller fixed in advance and no throttle (bench/api_urls.py). Requests of the two kinds
are interleaved at random, so both see the same load.

1. 50 concurrent clients against uvicorn on loopback, as fast as they can: p50/p95 per kind, with
   and without auth (a saturated server: p50 is mostly queueing).
2. The same 50 clients at 60% of that throughput, each request at its slot: what auth + throttling
   add to a request's time when the server is not saturated (the target's figure).
3. One client in process (no contention): the same, for the precise cost of auth + throttling.
Baseline in the same run: the raw SQL of the same history page (keyset query) through psycopg.
Own database `bench_api` (created and migrated here), Redis db 7. The last line is one JSON object.

    .venv/bin/python bench/api.py [--requests 4000] [--clients 50] [--chats 50] [--history 200]
"""

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.harness import bench_plan, free_port, http_wait, process_stop  # noqa: E402

PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DATABASE = "bench_api"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
ENV = {
    **os.environ,
    "DJANGO_SETTINGS_MODULE": "bench.api_settings",
    "DATABASE_URL": f"{PG}/{DATABASE}",
    "REDIS_URL": REDIS_URL,
    "CELERY_BROKER_URL": REDIS_URL,
    "CACHE_KEY_PREFIX": "bench-api",
    "LOG_LEVEL": "WARNING",
    "SECRET_KEY": "bench-only-secret",
    "DEBUG": "false",
    "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",  # testserver: Django's in-process client
}
os.environ.update(ENV)
KINDS = ("history", "send")
SEND_SHARE = 0.2  # one request in five is a send, the rest read history pages


def database_prepare() -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=ENV, check=True, timeout=600)


def fixtures_create(chats: int, history: int) -> tuple[str, list[int]]:
    """An organization with `chats` chats of `history` messages each, and an API key named bench."""
    import django

    django.setup()
    from datetime import timedelta

    from django.utils import timezone

    from crm.models import Chat, Contact, Organization, WhatsAppNumber
    from crm.services import api_key_create
    from messaging.models import Message

    plan = bench_plan(default_provider="fake")
    organization = Organization.objects.create(name="Bench", slug="bench", plan=plan)
    number = WhatsAppNumber.objects.create(organization=organization, name="Bench", provider="fake", instance_name="b")
    start = timezone.now() - timedelta(days=1)
    chat_ids = []
    for index in range(chats):
        contact = Contact.objects.create(organization=organization, phone=f"+5511987{index + 1:06d}")
        chat = Chat.objects.create(organization=organization, number=number, contact=contact)
        chat_ids.append(chat.pk)
        Message.objects.bulk_create(
            Message(
                organization=organization,
                number=number,
                chat=chat,
                direction="in",
                status="received",
                text=f"message {n} of chat {index}",
                provider_message_id=f"wamid.{index}.{n}",
                timestamp=start + timedelta(seconds=n),
            )
            for n in range(history)
        )
    _, secret = api_key_create(organization=organization, name="bench")
    return secret, chat_ids


def history_sql_baseline(chat_ids: list[int], samples: int = 1000) -> dict:
    """The raw keyset query of one history page (50 newest messages of a chat) through psycopg."""
    from bench.baselines import percentile

    latencies = []
    with psycopg.connect(f"{PG}/{DATABASE}", autocommit=True) as connection:
        for index in range(samples):
            before = time.perf_counter()
            connection.execute(
                "SELECT * FROM messaging_message WHERE chat_id = %s ORDER BY timestamp DESC, id DESC LIMIT 51",
                (chat_ids[index % len(chat_ids)],),
            ).fetchall()
            latencies.append((time.perf_counter() - before) * 1000)
    return {"p50_ms": round(percentile(latencies, 0.5), 3), "p95_ms": round(percentile(latencies, 0.95), 3)}


def plan_of_requests(count: int, chat_ids: list[int], seed: int) -> list[tuple[str, str, int]]:
    """(variant, kind, chat) for each request: variants and kinds interleaved at random."""
    chooser = random.Random(seed)
    return [
        (
            chooser.choice(("with_auth", "without_auth")),
            "send" if chooser.random() < SEND_SHARE else "history",
            chooser.choice(chat_ids),
        )
        for _ in range(count)
    ]


def summary(samples: dict) -> dict:
    from bench.baselines import percentile

    figures = {}
    for (variant, kind), latencies in sorted(samples.items()):
        figures.setdefault(variant, {})[kind] = {
            "requests": len(latencies),
            "p50_ms": round(percentile(latencies, 0.5), 3),
            "p95_ms": round(percentile(latencies, 0.95), 3),
        }
    for kind in KINDS:
        figures.setdefault("overhead_p50_ms", {})[kind] = round(
            figures["with_auth"][kind]["p50_ms"] - figures["without_auth"][kind]["p50_ms"], 3
        )
    return figures


# The paced round offers this share of the closed-loop round's throughput.
PACED_SHARE = 0.6


def path_of(variant: str, chat_id: int) -> str:
    prefix = "/api/v1" if variant == "with_auth" else "/bench/v1"
    return f"{prefix}/chats/{chat_id}/messages/"


def concurrent_round(base_url: str, secret: str, plan: list, clients: int, rate: float | None = None) -> dict:
    """`clients` clients working through `plan`: as fast as they can (closed loop), or, with `rate`,
    each request at its slot of a steady `rate` per second (open loop, like independent callers)."""
    samples: dict = {}
    lock = threading.Lock()
    local = threading.local()
    counter = iter(range(len(plan)))
    started = time.perf_counter()

    def one(indexed) -> None:
        index, (variant, kind, chat_id) = indexed
        if rate:
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {secret}"
        url = base_url + path_of(variant, chat_id)
        before = time.perf_counter()
        if kind == "history":
            response = session.get(url, params={"limit": 50}, timeout=30)
        else:
            response = session.post(url, json={"text": f"bench {next(counter)}"}, timeout=30)
        elapsed = (time.perf_counter() - before) * 1000
        if response.status_code not in (200, 202):
            raise RuntimeError(f"{kind} {variant} answered {response.status_code}: {response.text[:200]}")
        with lock:
            samples.setdefault((variant, kind), []).append(elapsed)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, enumerate(plan)))
    figures = summary(samples)
    figures["requests_per_second"] = round(len(plan) / (time.perf_counter() - started), 1)
    return figures


def in_process_round(secret: str, plan: list) -> dict:
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    samples: dict = {}
    for index, (variant, kind, chat_id) in enumerate(plan):
        url = path_of(variant, chat_id)
        before = time.perf_counter()
        if kind == "history":
            response = client.get(url, {"limit": 50})
        else:
            response = client.post(url, {"text": f"in process {index}"}, content_type="application/json")
        elapsed = (time.perf_counter() - before) * 1000
        if response.status_code not in (200, 202):
            raise RuntimeError(f"{kind} {variant} answered {response.status_code}: {response.content[:200]}")
        samples.setdefault((variant, kind), []).append(elapsed)
    return summary(samples)


def server_start(port: int) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 (our own fixed command)
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=ENV,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def print_round(title: str, figures: dict) -> None:
    for kind in KINDS:
        with_auth, without = figures["with_auth"][kind], figures["without_auth"][kind]
        print(
            f"{title} {kind:>7}: with auth+throttle p50 {with_auth['p50_ms']} ms / p95 {with_auth['p95_ms']} ms; "
            f"without p50 {without['p50_ms']} ms / p95 {without['p95_ms']} ms; "
            f"overhead at p50 {figures['overhead_p50_ms'][kind]} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--history", type=int, default=200)
    parser.add_argument("--in-process", type=int, default=2000, help="requests of the uncontended round")
    args = parser.parse_args()

    import redis

    database_prepare()
    secret, chat_ids = fixtures_create(args.chats, args.history)
    baseline = history_sql_baseline(chat_ids)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = server_start(port)
    try:
        http_wait(f"{base_url}/api/schema/")
        concurrent_round(base_url, secret, plan_of_requests(200, chat_ids, seed=1), args.clients)  # warm up
        concurrent = concurrent_round(base_url, secret, plan_of_requests(args.requests, chat_ids, seed=2), args.clients)
        # The same clients below the server's capacity: the queueing of a saturated server
        # multiplies any per-request cost by the queue's length; here p50 is one request's time.
        paced_rate = round(PACED_SHARE * concurrent["requests_per_second"], 1)
        paced_plan = plan_of_requests(min(args.requests, int(paced_rate * 20)), chat_ids, seed=5)
        paced = concurrent_round(base_url, secret, paced_plan, args.clients, rate=paced_rate)
    finally:
        process_stop(server)
    in_process_round(secret, plan_of_requests(200, chat_ids, seed=3))  # warm up
    uncontended = in_process_round(secret, plan_of_requests(args.in_process, chat_ids, seed=4))
    client = redis.Redis.from_url(REDIS_URL)
    client.delete("celery")  # the sends' delivery tasks: no worker runs here
    for key in client.scan_iter(match=f"{ENV['CACHE_KEY_PREFIX']}:*", count=500):
        client.delete(key)  # cached entries, versions, rate windows of this run

    print_round(f"{args.clients} clients, uvicorn, as fast as they can", concurrent)
    print_round(f"{args.clients} clients, uvicorn, {paced_rate}/s together", paced)
    print_round("1 client, in process", uncontended)
    history_ratio = round(uncontended["without_auth"]["history"]["p50_ms"] / baseline["p50_ms"], 1)
    print(
        f"baseline: raw SQL of the history page p50 {baseline['p50_ms']} ms / p95 {baseline['p95_ms']} ms; "
        f"the API's page (in process, no auth) is {history_ratio} x that"
    )
    results = {
        "requests": args.requests,
        "clients": args.clients,
        "concurrent_uvicorn": concurrent,
        "paced_uvicorn": {**paced, "rate_per_second": paced_rate},
        "in_process": uncontended,
        "history_sql_baseline": baseline,
        "history_ratio_to_sql": history_ratio,
        "target_overhead_p50_ms": 1.0,
        "target_met": all(
            figure <= 1.0 for figures in (paced, uncontended) for figure in figures["overhead_p50_ms"].values()
        ),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
