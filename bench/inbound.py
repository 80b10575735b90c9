"""Inbound benchmark: webhooks at rising rates (30% duplicates) while 100 WebSocket clients listen.

Starts uvicorn with the real ASGI app (real Redis channel layer) on loopback, posts fake-provider
webhooks from threads, and has 100 `websockets` clients on the organization's inbox count every
`message.created` they get. Reports ingest throughput, webhook-to-WebSocket latency p50/p95/p99
(from just before the POST to the frame arriving at the client), deliveries per client (100%,
0 duplicates expected), beside the raw baselines of bench/baselines.py measured in the same run.

    .venv/bin/python bench/inbound.py      # DATABASE_URL / REDIS_URL as for the app; db `bench_inbound`

Bounded in time (about a minute); everything it starts is stopped at the end.
"""

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.baselines import percentile, psycopg_insert_rate, redis_publish_round_trip  # noqa: E402

CLIENTS = 100
RATES = (50, 100, 200)  # webhooks per second offered, each for PHASE_SECONDS
PHASE_SECONDS = 4
DUPLICATE_SHARE = 0.3
BURST_WEBHOOKS = 600  # the throughput phase: as fast as POSTER_THREADS can post
POSTER_THREADS = 8
BENCH_DATABASE = "bench_inbound"


def _database_url() -> str:
    base = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{BENCH_DATABASE}"))


def _database_ensure(url: str) -> None:
    import psycopg

    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DATABASE]).fetchone()
        if not exists:
            connection.execute(f"CREATE DATABASE {BENCH_DATABASE}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _setup(env: dict) -> dict:
    """Migrate, then create an organization, a member with a session, and a fake-provider number."""
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from crm.models import Membership, Organization, Plan, WhatsAppNumber

    tag = uuid.uuid4().hex[:8]
    plan = Plan.objects.order_by("id").first()
    organization = Organization.objects.create(name=f"Bench {tag}", slug=f"bench-{tag}", plan=plan)
    user = get_user_model().objects.create_user(username=f"bench-{tag}", password=uuid.uuid4().hex)
    Membership.objects.create(organization=organization, user=user, role=Membership.Role.ADMIN)
    number = WhatsAppNumber.objects.create(
        organization=organization, name="Bench", provider="fake", instance_name=f"bench-{tag}"
    )
    client = Client()
    client.force_login(user)
    return {
        "cookie": f"sessionid={client.cookies['sessionid'].value}",
        "instance": number.instance_name,
        "secret": number.webhook_secret,
    }


def _wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError("uvicorn did not start")


class Listener:
    """100 WebSocket clients in one asyncio loop (its own thread), counting deliveries per message."""

    def __init__(self, port: int, cookie: str):
        self.url = f"ws://127.0.0.1:{port}/ws/inbox/"
        self.cookie = cookie
        self.received: list[Counter] = [Counter() for _ in range(CLIENTS)]
        self.arrival: dict[str, list[float]] = defaultdict(list)
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _client(self, index: int, opened: list) -> None:
        import websockets

        headers = {"Cookie": self.cookie, "Origin": "http://127.0.0.1"}
        async with websockets.connect(self.url, additional_headers=headers, max_queue=None) as ws:
            frame = json.loads(await ws.recv())
            assert frame["type"] == "ready", frame
            opened.append(index)
            while not self.stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=0.2)
                except TimeoutError:
                    continue
                now = time.perf_counter()
                frame = json.loads(raw)
                if frame.get("type") == "ping":
                    await ws.send('{"type":"pong"}')
                    continue
                event = frame.get("event") or {}
                if event.get("type") == "message.created" and "preview" in (event.get("data") or {}):
                    key = event["data"]["preview"]
                    self.received[index][key] += 1
                    self.arrival[key].append(now)

    async def _main(self) -> None:
        opened: list = []
        tasks = [asyncio.create_task(self._client(index, opened)) for index in range(CLIENTS)]
        while len(opened) < CLIENTS:
            if any(task.done() and task.exception() for task in tasks):
                raise next(task.exception() for task in tasks if task.done() and task.exception())
            await asyncio.sleep(0.05)
        self.ready.set()
        await asyncio.gather(*tasks)


def _post(session, url: str, secret: str, message_id: str, text: str) -> int:
    body = json.dumps({"event": "message", "id": message_id, "from": "+5511912345678", "text": text})
    return session.post(url, data=body, headers={"Authorization": f"Bearer {secret}"}, timeout=10).status_code


def _phase_paced(url: str, secret: str, rate: int, seconds: float, sent_at: dict, tag: str) -> dict:
    """Offer `rate` webhooks/s for `seconds` (30% re-sends of earlier ids); return what happened."""
    import requests

    total = int(rate * seconds)
    plan = []
    unique = []
    for index in range(total):
        if unique and (index % 10) < DUPLICATE_SHARE * 10:
            plan.append(unique[index % len(unique)])
        else:
            key = f"{tag}-{index}"
            unique.append(key)
            plan.append(key)
    statuses = Counter()
    lock = threading.Lock()
    started = time.perf_counter()

    def worker(offset: int) -> None:
        session = requests.Session()
        for slot in range(offset, total, POSTER_THREADS):
            delay = started + slot / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            key = plan[slot]
            with lock:
                sent_at.setdefault(key, time.perf_counter())
            status = _post(session, url, secret, key, key)
            with lock:
                statuses[status] += 1

    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(POSTER_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "offered_per_second": rate,
        "posted": total,
        "unique": len(unique),
        "elapsed_s": elapsed,
        "statuses": dict(statuses),
        "keys": unique,
    }


def main() -> None:
    database_url = _database_url()
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
    _database_ensure(database_url)
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or uuid.uuid4().hex * 2,
    }
    print("baselines ...", flush=True)
    insert = psycopg_insert_rate(database_url.replace("postgres://", "postgresql://", 1))
    publish = redis_publish_round_trip(redis_url)
    print(
        f"  psycopg INSERT+COMMIT: {insert['rows_per_second']:.0f}/s; Redis publish round trip p50 "
        f"{publish['p50_ms']:.3f} ms p95 {publish['p95_ms']:.3f} ms",
        flush=True,
    )
    fixture = _setup(env)
    server = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            os.environ.get("BENCH_WORKERS", "2"),
        ],
        cwd=ROOT,
        env=env,
    )
    listener = None
    try:
        _wait_for_port(port)
        listener = Listener(port, fixture["cookie"])
        listener.thread.start()
        if not listener.ready.wait(30):
            raise RuntimeError("WebSocket clients did not all connect")
        url = f"http://127.0.0.1:{port}/webhooks/fake/{fixture['instance']}/"
        sent_at: dict[str, float] = {}
        phases = []
        for rate in RATES:
            phase = _phase_paced(url, fixture["secret"], rate, PHASE_SECONDS, sent_at, f"r{rate}")
            phases.append(phase)
            print(
                f"  offered {rate}/s: {phase['posted']} posts ({phase['unique']} unique) in "
                f"{phase['elapsed_s']:.1f} s, statuses {phase['statuses']}",
                flush=True,
            )
        burst_rate = 10_000  # unpaced: as fast as the posters go
        burst = _phase_paced(url, fixture["secret"], burst_rate, BURST_WEBHOOKS / burst_rate, sent_at, "burst")
        ingest_per_second = burst["posted"] / burst["elapsed_s"]
        unique_per_second = burst["unique"] / burst["elapsed_s"]
        print(
            f"  burst: {burst['posted']} posts ({burst['unique']} unique) in {burst['elapsed_s']:.2f} s = "
            f"{ingest_per_second:.0f} webhooks/s, {unique_per_second:.0f} new messages/s",
            flush=True,
        )
        time.sleep(2)  # let the last pushes arrive
        listener.stop.set()
        listener.thread.join(timeout=10)
        expected = [key for phase in [*phases, burst] for key in phase["keys"]]
        paced = [key for phase in phases for key in phase["keys"]]
        delivered = sum(1 for counter in listener.received for key in expected if counter[key] >= 1)
        duplicates = sum(max(0, counter[key] - 1) for counter in listener.received for key in expected)
        per_client = [sum(1 for key in expected if counter[key]) for counter in listener.received]
        latencies = [(arrival - sent_at[key]) * 1000 for key in paced for arrival in listener.arrival.get(key, [])]
    finally:
        if listener is not None:
            listener.stop.set()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    expected_total = len(expected) * CLIENTS
    result = {
        "ingest_webhooks_per_second": round(ingest_per_second, 1),
        "ingest_new_messages_per_second": round(unique_per_second, 1),
        "baseline_insert_rows_per_second": round(insert["rows_per_second"], 1),
        "ingest_ratio": round(ingest_per_second / insert["rows_per_second"], 3),
        "latency_p50_ms": round(percentile(latencies, 0.50), 2) if latencies else None,
        "latency_p95_ms": round(percentile(latencies, 0.95), 2) if latencies else None,
        "latency_p99_ms": round(percentile(latencies, 0.99), 2) if latencies else None,
        "baseline_redis_round_trip_p50_ms": round(publish["p50_ms"], 3),
        "baseline_redis_round_trip_p95_ms": round(publish["p95_ms"], 3),
        "clients": CLIENTS,
        "delivered_share": round(delivered / expected_total, 4) if expected_total else None,
        "duplicate_deliveries": duplicates,
        "min_messages_per_client": min(per_client),
        "messages_expected_per_client": len(expected),
    }
    print(
        f"ingest: {result['ingest_webhooks_per_second']} webhooks/s vs raw insert "
        f"{result['baseline_insert_rows_per_second']}/s = {result['ingest_ratio']}x (target >= 0.4)"
    )
    print(
        f"webhook -> WebSocket latency (paced phases): p50 {result['latency_p50_ms']} ms, p95 "
        f"{result['latency_p95_ms']} ms, p99 {result['latency_p99_ms']} ms (target p95 <= 25); Redis round "
        f"trip p50 {result['baseline_redis_round_trip_p50_ms']} ms"
    )
    print(f"deliveries: {result['delivered_share'] * 100:.2f}% of {expected_total}, {duplicates} duplicates")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
