"""Outbound benchmark: N sends through the HTTP API, delivered by real workers to the fake Evolution server.

Starts its own uvicorn, two Celery worker processes (the machine's two cores) and the fake server,
against PostgreSQL database `bench_outbound` (created and migrated here) and Redis db 5. For each
provider latency (0 ms, 50 ms) it prints: accept latency p50/p95 (HTTP POST → 202), end-to-end
throughput (first accept → last message sent), and the raw Celery no-op round-trip rate taken in
the same run. The last line is one JSON object with every figure.

    .venv/bin/python bench/outbound.py [--messages 1000] [--chats 50]
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.harness import bench_plan, free_port, http_wait, process_stop  # noqa: E402

PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DATABASE = "bench_outbound"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
ENV = {
    **os.environ,
    "DATABASE_URL": f"{PG}/{DATABASE}",
    "REDIS_URL": REDIS_URL,
    "CELERY_BROKER_URL": REDIS_URL,
    "CACHE_KEY_PREFIX": "bench-outbound",
    "PUBLIC_BASE_URL": "http://127.0.0.1:9",  # the fake's webhooks go nowhere: inbound is not measured here
    "LOG_LEVEL": "WARNING",
    "SECRET_KEY": "bench-only-secret",
    "DEBUG": "false",
}
os.environ.update(ENV)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def database_prepare() -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=ENV, check=True, timeout=300)


def process_start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 (our own fixed commands)
        command, cwd=ROOT, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def fake_start(api_key: str) -> tuple[subprocess.Popen, str]:
    """The fake Evolution server in its own process: in this one it would share the GIL with the
    benchmark's clients and slow both ."""
    port = free_port()
    process = process_start(
        [
            sys.executable,
            "-m",
            "providers.fakes",
            "evolution",
            "--port",
            str(port),
            f"--set=api_key={api_key}",
            "--set=webhook_delay_seconds=0",
            "--set=auto_status=false",
        ]
    )
    url = f"http://127.0.0.1:{port}"
    http_wait(f"{url}/_fake/state")
    return process, url


def fixtures_create(fake_url: str, api_key: str, chats: int):
    import django

    django.setup()

    from crm.models import Chat, Contact, Organization, ProviderServer, WhatsAppNumber
    from crm.services import number_provision

    plan = bench_plan(default_provider="evolution")
    organization = Organization.objects.create(name="Bench", slug=f"bench-{time.time_ns()}", plan=plan)
    ProviderServer.objects.create(name=f"fake-{time.time_ns()}", base_url=fake_url, api_key=api_key)
    number = WhatsAppNumber.objects.create(
        organization=organization, name="Bench", provider="evolution", instance_name=f"bench-{time.time_ns()}"
    )
    number = number_provision(number_id=number.pk)
    chat_ids = []
    for index in range(chats):
        contact = Contact.objects.create(organization=organization, phone=f"+5511987{index + 1:06d}")
        chat_ids.append(Chat.objects.create(organization=organization, number=number, contact=contact).pk)
    from crm.services import api_key_create

    _, api_key = api_key_create(organization=organization, name="bench")
    return api_key, number.instance_name, chat_ids


def api_session(api_key: str) -> requests.Session:
    """A client of the integrator API, as integrators send: with its API key."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {api_key}"
    return session


def _post_send(session: requests.Session, base_url: str, chat_id: int, label: str, index: int) -> tuple[float, int]:
    before = time.perf_counter()
    response = session.post(
        f"{base_url}/api/v1/chats/{chat_id}/messages/",
        json={"text": f"{label}-{index}"},
        headers={"Idempotency-Key": f"{label}-{index}"},
        timeout=30,
    )
    latency = (time.perf_counter() - before) * 1000
    if response.status_code != 202:
        raise RuntimeError(f"send answered {response.status_code}: {response.text[:300]}")
    return latency, response.json()["id"]


def _all_sent_wait(ids: list[int]) -> None:
    from messaging.models import Message

    deadline = time.monotonic() + 300
    while Message.objects.filter(pk__in=ids, status="sent").count() < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError("messages were not all sent within 300 s")
        time.sleep(0.01)


def accept_round(base_url, session, chat_ids, messages: int, label: str) -> dict:
    """One client sending one request at a time: the latency an agent or integrator sees."""
    from bench.baselines import percentile

    latencies, ids = [], []
    for index in range(messages):
        latency, message_id = _post_send(session, base_url, chat_ids[index % len(chat_ids)], label, index)
        latencies.append(latency)
        ids.append(message_id)
    _all_sent_wait(ids)
    return {
        "accept_p50_ms": round(percentile(latencies, 0.50), 2),
        "accept_p95_ms": round(percentile(latencies, 0.95), 2),
    }


def burst_round(base_url, sessions, chat_ids, messages: int, label: str) -> dict:
    """`len(sessions)` clients sending at once, like the no-op baseline's burst: first accept to last sent."""
    from bench.baselines import percentile
    from messaging.models import Message

    per_client = messages // len(sessions)
    results: list[list[tuple[float, int]]] = [[] for _ in sessions]

    def client(number: int) -> None:
        for index in range(per_client):
            chat_id = chat_ids[(number * per_client + index) % len(chat_ids)]
            results[number].append(_post_send(sessions[number], base_url, chat_id, f"{label}-c{number}", index))

    threads = [threading.Thread(target=client, args=(number,)) for number in range(len(sessions))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted_in = time.perf_counter() - started
    ids = [message_id for result in results for _, message_id in result]
    if len(ids) != per_client * len(sessions):
        raise RuntimeError("a client thread failed")
    _all_sent_wait(ids)
    elapsed = time.perf_counter() - started
    latencies = [latency for result in results for latency, _ in result]
    return {
        "clients": len(sessions),
        "messages": len(ids),
        "accept_p50_ms": round(percentile(latencies, 0.50), 2),
        "accept_p95_ms": round(percentile(latencies, 0.95), 2),
        "accept_per_second": round(len(ids) / accepted_in, 1),
        "end_to_end_per_second": round(len(ids) / elapsed, 1),
        "not_sent": Message.objects.filter(pk__in=ids).exclude(status="sent").count(),
    }


def fake_faults(fake_url: str, **faults) -> None:
    requests.post(f"{fake_url}/_fake/faults", json=faults, timeout=10).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in the burst round")
    parser.add_argument("--web-workers", type=int, default=2, help="uvicorn worker processes")
    args = parser.parse_args()

    import redis

    redis.Redis.from_url(REDIS_URL).delete("celery")
    database_prepare()
    api_key = f"bench-{time.time_ns()}"
    fake, fake_url = fake_start(api_key)
    processes = [fake]
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    try:
        bench_key, instance, chat_ids = fixtures_create(fake_url, api_key, args.chats)
        requests.post(f"{fake_url}/_fake/scan/{instance}", json={}, timeout=10).raise_for_status()
        processes.append(
            process_start(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "config.asgi:application",
                    "--port",
                    str(port),
                    "--workers",
                    str(args.web_workers),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ]
            )
        )
        processes.append(
            process_start(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--include",
                    "bench.baselines",
                    "-Q",
                    "sends,bulk",  # deliveries and the no-op baseline (routed to bulk) on the same worker
                    "--concurrency",
                    "2",
                    "--loglevel",
                    "WARNING",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ]
            )
        )
        http_wait(f"{base_url}/accounts/login/")
        session = api_session(bench_key)
        sessions = [api_session(bench_key) for _ in range(args.clients)]
        from bench.baselines import celery_noop_round_trip

        celery_noop_round_trip(REDIS_URL, tasks=100)  # warm the pool
        noop = celery_noop_round_trip(REDIS_URL, tasks=args.messages)
        accept_round(base_url, session, chat_ids, 100, "warmup")
        results = {"messages": args.messages, "chats": args.chats, "celery_noop": noop}
        for latency in (0, 50):
            fake_faults(fake_url, latency_ms=latency)
            figures = {
                **accept_round(base_url, session, chat_ids, min(args.messages, 300), f"lat{latency}"),
                "burst": burst_round(base_url, sessions, chat_ids, args.messages, f"burst{latency}"),
            }
            figures["ratio_to_noop"] = round(figures["burst"]["end_to_end_per_second"] / noop["tasks_per_second"], 3)
            results[f"latency_{latency}ms"] = figures
            print(
                f"provider latency {latency:>2} ms: accept (one client) p50 {figures['accept_p50_ms']} ms, "
                f"p95 {figures['accept_p95_ms']} ms; burst of {figures['burst']['messages']} from "
                f"{args.clients} clients: end to end {figures['burst']['end_to_end_per_second']} msg/s "
                f"= {figures['ratio_to_noop']} x the Celery no-op rate ({noop['tasks_per_second']:.0f} tasks/s)"
            )
        print(json.dumps(results))
    finally:
        for process in reversed(processes):
            process_stop(process)


if __name__ == "__main__":
    main()
