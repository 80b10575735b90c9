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
import tempfile
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
RATES = (25, 50, 100, 200)  # webhooks per second offered, each for PHASE_SECONDS
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


LISTENER_PROCESSES = 2  # the 100 clients run in their own processes, off the posting process's GIL


def _listen(port: int, cookie: str, clients: int, output: str) -> None:
    """A listener process: `clients` sockets on the inbox; prints "ready", runs until stdin closes,
    then writes every arrival (perf_counter is system-wide, so the parent can compare times)."""
    import websockets

    url = f"ws://127.0.0.1:{port}/ws/inbox/"
    arrivals: list[dict[str, list[float]]] = [defaultdict(list) for _ in range(clients)]

    async def client(index: int, opened: list, stop: asyncio.Event) -> None:
        headers = {"Cookie": cookie, "Origin": "http://127.0.0.1"}
        async with websockets.connect(url, additional_headers=headers, max_queue=None) as ws:
            frame = json.loads(await ws.recv())
            assert frame["type"] == "ready", frame
            opened.append(index)
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=0.2)
                except TimeoutError:
                    continue
                now = time.perf_counter()
                if '"message.created"' not in raw:
                    if '"ping"' in raw:
                        await ws.send('{"type":"pong"}')
                    continue
                data = json.loads(raw)["event"]["data"]
                arrivals[index][data["preview"]].append(now)

    async def main() -> None:
        opened: list = []
        stop = asyncio.Event()
        tasks = [asyncio.create_task(client(index, opened, stop)) for index in range(clients)]
        while len(opened) < clients:
            failed = [task for task in tasks if task.done() and task.exception()]
            if failed:
                raise failed[0].exception()
            await asyncio.sleep(0.05)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    Path(output).write_text(json.dumps(arrivals))


class Listeners:
    """CLIENTS inbox sockets over LISTENER_PROCESSES processes; `stop()` returns every arrival."""

    def __init__(self, port: int, cookie: str):
        self.folder = tempfile.mkdtemp(prefix="bench-inbound-")
        self.outputs = []
        self.processes = []
        for index in range(LISTENER_PROCESSES):
            output = os.path.join(self.folder, f"listener-{index}.json")
            self.outputs.append(output)
            self.processes.append(
                subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
                    [
                        sys.executable,
                        __file__,
                        "--listen",
                        str(port),
                        cookie,
                        str(CLIENTS // LISTENER_PROCESSES),
                        output,
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )

    def wait_ready(self) -> None:
        for process in self.processes:
            line = process.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a listener process failed to connect its clients: {line!r}")

    def stop(self) -> list[dict[str, list[float]]]:
        for process in self.processes:
            with contextlib.suppress(OSError):
                process.stdin.close()
        arrivals = []
        for process, output in zip(self.processes, self.outputs, strict=True):
            process.wait(timeout=30)
            with contextlib.suppress(FileNotFoundError):
                arrivals.extend(json.loads(Path(output).read_text()))
                Path(output).unlink()
        return arrivals


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


def _deliveries(arrivals: list[dict[str, list[float]]], keys: list[str], sent_at: dict) -> dict:
    """Delivered share, duplicates and webhook-to-socket latency of `keys` over every client."""
    latencies = [
        (arrival - sent_at[key]) * 1000 for client in arrivals for key in keys for arrival in client.get(key, [])
    ]
    delivered = sum(1 for client in arrivals for key in keys if client.get(key))
    expected = len(keys) * len(arrivals)
    return {
        "latency_p50_ms": round(percentile(latencies, 0.50), 2) if latencies else None,
        "latency_p95_ms": round(percentile(latencies, 0.95), 2) if latencies else None,
        "latency_p99_ms": round(percentile(latencies, 0.99), 2) if latencies else None,
        "delivered_share": round(delivered / expected, 4) if expected else None,
        "duplicate_deliveries": sum(max(0, len(client.get(key, [])) - 1) for client in arrivals for key in keys),
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
            "--ws",
            "websockets-sansio",
            "--ws-per-message-deflate",
            "false",  # as `make run` serves it (config/launcher.py)
        ],
        cwd=ROOT,
        env=env,
    )
    listeners = None
    try:
        _wait_for_port(port)
        listeners = Listeners(port, fixture["cookie"])
        listeners.wait_ready()
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
            time.sleep(1)  # let the phase's pushes drain, so the next phase's latency is its own
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
        arrivals = listeners.stop()
        listeners = None
    finally:
        if listeners is not None:
            listeners.stop()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    every_key = [key for phase in [*phases, burst] for key in phase["keys"]]
    overall = _deliveries(arrivals, every_key, sent_at)
    per_phase = {
        f"offered_{phase['offered_per_second']}": _deliveries(arrivals, phase["keys"], sent_at) for phase in phases
    }
    result = {
        "ingest_webhooks_per_second": round(ingest_per_second, 1),
        "ingest_new_messages_per_second": round(unique_per_second, 1),
        "baseline_insert_rows_per_second": round(insert["rows_per_second"], 1),
        "ingest_ratio": round(ingest_per_second / insert["rows_per_second"], 3),
        "paced_phases": per_phase,
        "burst": _deliveries(arrivals, burst["keys"], sent_at),
        "baseline_redis_round_trip_p50_ms": round(publish["p50_ms"], 3),
        "baseline_redis_round_trip_p95_ms": round(publish["p95_ms"], 3),
        "clients": len(arrivals),
        "delivered_share": overall["delivered_share"],
        "duplicate_deliveries": overall["duplicate_deliveries"],
        "messages_expected_per_client": len(every_key),
    }
    print(
        f"ingest: {result['ingest_webhooks_per_second']} webhooks/s vs raw insert "
        f"{result['baseline_insert_rows_per_second']}/s = {result['ingest_ratio']}x (target >= 0.4)"
    )
    for name, figures in per_phase.items():
        print(
            f"webhook -> WebSocket latency, {name}/s: p50 {figures['latency_p50_ms']} ms, p95 "
            f"{figures['latency_p95_ms']} ms, p99 {figures['latency_p99_ms']} ms (target p95 <= 25); "
            f"{figures['delivered_share'] * 100:.2f}% delivered, {figures['duplicate_deliveries']} duplicates"
        )
    print(f"Redis publish round trip p50 {result['baseline_redis_round_trip_p50_ms']} ms")
    print(
        f"deliveries overall: {overall['delivered_share'] * 100:.2f}% of {len(every_key) * len(arrivals)}, "
        f"{overall['duplicate_deliveries']} duplicates"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--listen"]:
        _listen(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main()
