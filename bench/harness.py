"""What every benchmark needs to run the product beside it: free ports, processes, waiting for HTTP."""

import os
import signal
import socket
import subprocess
import time

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_stop(process: subprocess.Popen) -> None:
    """Stop a process started with `start_new_session=True` and its children: SIGTERM, then SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def http_wait(url: str, timeout: float = 30) -> None:
    """Wait until `url` answers anything; raise RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def bench_plan(*, default_provider: str):
    """The benchmarks' plan: no daily quota, a request rate no benchmark reaches (Django set up)."""
    from crm.models import Plan

    plan, _ = Plan.objects.get_or_create(
        code="bench",
        defaults={
            "name": "Bench",
            "max_numbers": 5,
            "messages_per_day": None,
            "api_requests_per_minute": 10_000_000,  # counted on every request, never refused
            "default_provider": default_provider,
        },
    )
    return plan
