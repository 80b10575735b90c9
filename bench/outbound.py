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
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DATABASE = "bench_outbound"
BENCH_PASSWORD = "bench-password-1"  # noqa: S105 (a throwaway user in a throwaway database)
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_prepare() -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=ENV, check=True, timeout=300)


def process_start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 (our own fixed commands)
        command, cwd=ROOT, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def process_stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def http_wait(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def fixtures_create(fake_url: str, api_key: str, chats: int):
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from crm.models import Chat, Contact, Membership, Organization, Plan, ProviderServer, WhatsAppNumber
    from crm.services import number_provision

    plan, _ = Plan.objects.get_or_create(
        code="bench",
        defaults={
            "name": "Bench",
            "max_numbers": 5,
            "messages_per_day": None,
            "api_requests_per_minute": 100_000,
            "default_provider": "evolution",
        },
    )
    organization = Organization.objects.create(name="Bench", slug=f"bench-{time.time_ns()}", plan=plan)
    user = get_user_model().objects.create_user(username=f"bench{time.time_ns()}", password=BENCH_PASSWORD)
    Membership.objects.create(organization=organization, user=user, role="admin")
    ProviderServer.objects.create(name=f"fake-{time.time_ns()}", base_url=fake_url, api_key=api_key)
    number = WhatsAppNumber.objects.create(
        organization=organization, name="Bench", provider="evolution", instance_name=f"bench-{time.time_ns()}"
    )
    number = number_provision(number_id=number.pk)
    chat_ids = []
    for index in range(chats):
        contact = Contact.objects.create(organization=organization, phone=f"+5511987{index + 1:06d}")
        chat_ids.append(Chat.objects.create(organization=organization, number=number, contact=contact).pk)
    return user.username, BENCH_PASSWORD, number.instance_name, chat_ids


def login(base_url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base_url}/accounts/login/", timeout=10)
    token = session.cookies["csrftoken"]
    response = session.post(
        f"{base_url}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base_url}/accounts/login/"},
        timeout=10,
    )
    response.raise_for_status()
    session.headers.update({"X-CSRFToken": session.cookies["csrftoken"], "Referer": base_url})
    return session


def run_round(base_url, session, chat_ids, messages: int, label: str) -> dict:
    from bench.baselines import percentile
    from messaging.models import Message

    latencies = []
    ids = []
    started = time.perf_counter()
    for index in range(messages):
        chat_id = chat_ids[index % len(chat_ids)]
        before = time.perf_counter()
        response = session.post(
            f"{base_url}/api/v1/chats/{chat_id}/messages/",
            json={"text": f"{label}-{index}"},
            headers={"Idempotency-Key": f"{label}-{index}"},
            timeout=10,
        )
        latencies.append((time.perf_counter() - before) * 1000)
        if response.status_code != 202:
            raise RuntimeError(f"send answered {response.status_code}: {response.text[:300]}")
        ids.append(response.json()["id"])
    accepted_in = time.perf_counter() - started
    deadline = time.monotonic() + 300
    while Message.objects.filter(pk__in=ids, status="sent").count() < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError("messages were not all sent within 300 s")
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    failed = Message.objects.filter(pk__in=ids).exclude(status="sent").count()
    return {
        "accept_p50_ms": round(percentile(latencies, 0.50), 2),
        "accept_p95_ms": round(percentile(latencies, 0.95), 2),
        "accept_per_second": round(messages / accepted_in, 1),
        "end_to_end_per_second": round(messages / elapsed, 1),
        "not_sent": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--chats", type=int, default=50)
    args = parser.parse_args()

    import redis

    redis.Redis.from_url(REDIS_URL).delete("celery")
    database_prepare()
    from providers.fakes.evolution import FakeEvolutionServer

    fake = FakeEvolutionServer(webhook_delay_seconds=0, auto_status=False).start()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    processes = []
    try:
        username, password, instance, chat_ids = fixtures_create(fake.url, fake.api_key, args.chats)
        fake.scan(instance)
        fake.instances[instance].webhook["enabled"] = False
        processes.append(
            process_start(
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
        session = login(base_url, username, password)
        from bench.baselines import celery_noop_round_trip

        celery_noop_round_trip(REDIS_URL, tasks=100)  # warm the pool
        noop = celery_noop_round_trip(REDIS_URL, tasks=args.messages)
        run_round(base_url, session, chat_ids, 50, "warmup")
        results = {"messages": args.messages, "chats": args.chats, "celery_noop": noop}
        for latency in (0, 50):
            fake.faults_set(latency_ms=latency)
            figures = run_round(base_url, session, chat_ids, args.messages, f"lat{latency}")
            figures["ratio_to_noop"] = round(figures["end_to_end_per_second"] / noop["tasks_per_second"], 3)
            results[f"latency_{latency}ms"] = figures
            print(
                f"provider latency {latency:>2} ms: accept p50 {figures['accept_p50_ms']} ms, "
                f"p95 {figures['accept_p95_ms']} ms; end to end {figures['end_to_end_per_second']} msg/s "
                f"= {figures['ratio_to_noop']} x the Celery no-op rate ({noop['tasks_per_second']:.0f} tasks/s)"
            )
        print(json.dumps(results))
    finally:
        for process in processes:
            process_stop(process)
        fake.stop()


if __name__ == "__main__":
    main()
