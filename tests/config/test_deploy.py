"""The multi-machine deployment runs as config/deploy/ says: every Procfile line, as its own process.

The release command runs first, then web, one worker per queue and beat start exactly as the
Procfile writes them (through a shell, with $PORT set), in production mode, against the test
database and Redis. A message posted to the running web process is delivered by the sends worker
to a fake Evolution server; at the end every process group is stopped and must be gone.
"""

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests
from django.conf import settings
from django.test import Client

from config.celery import QUEUES
from config.deploy.procfile import procfile_entries
from messaging.models import Message
from providers.fakes.evolution import FakeEvolutionServer
from tests.factories import PASSWORD, ChatFactory, ContactFactory, MembershipFactory
from tests.messaging.outbound_worker import database_url, wait_until
from tests.messaging.test_outbound import evolution_number

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "config" / "deploy"
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
# The log line by which each kind of process says it is ready (Celery's, at -l info).
READY_MARKERS = {"sends": " ready.", "inbound": " ready.", "bulk": " ready.", "beat": "beat: Starting..."}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def queues_empty() -> None:
    """Drop whatever earlier tests left on the real queue names (the workers here consume them)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for queue in QUEUES:
        client.delete(queue, *client.keys(f"{queue}\x06*"))
    client.close()


class ProcfileProcess:
    """One Procfile line run as a Procfile runner does: `sh -c <command>` in its own process group."""

    def __init__(self, name: str, command: str, env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def is_group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        # A zombie leader still "exists" until reaped; reap it, then ask again.
        if self.process.poll() is not None:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return False
        return True

    def priorities(self) -> set[tuple[int, int]]:
        """(nice, scheduling policy) of the group's processes (/proc/<pid>/stat: group 5th, nice 19th, policy 41st)."""
        values = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                name, fields = stat.read_text().split(" (", 1)[1].rsplit(")", 1)
            except (OSError, IndexError, ValueError):
                continue
            fields = fields.split()
            if int(fields[2]) == self.process.pid and name != "sh":  # the shell running the line is not the worker
                values.add((int(fields[16]), int(fields[38])))
        return values

    def signal_group(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, number)


def processes_stop(processes: list[ProcfileProcess]) -> list[str]:
    """SIGTERM every group; SIGKILL what is left after STOP_TIMEOUT; return the names that needed it."""
    for process in processes:
        process.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(process.is_group_alive() for process in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = []
    for process in processes:
        if process.is_group_alive():
            killed.append(process.name)
            process.signal_group(signal.SIGKILL)
    for process in processes:
        process.process.wait(timeout=10)
    return killed


@pytest.fixture
def deploy_env(settings, tmp_path) -> dict[str, str]:
    """The environment file of a production machine, pointed at the test database and Redis."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PRODUCTION": "true",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "CSRF_TRUSTED_ORIGINS": "https://127.0.0.1",
        "PUBLIC_BASE_URL": "https://127.0.0.1",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": settings.CACHE_KEY_PREFIX,  # the test's own prefix, cleaned up after it
        "STATIC_ROOT": str(tmp_path / "static"),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "CONVERSA_VAR_DIR": str(tmp_path / "var"),
        "CONVERSA_HOST": "127.0.0.1",
        "PROVIDER_CONNECT_TIMEOUT": "2",
        "PROVIDER_READ_TIMEOUT": "5",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def evolution():
    server = FakeEvolutionServer(webhook_delay_seconds=0, auto_status=False).start()
    yield server
    server.stop()


def test_procfile_names_release_web_one_worker_per_queue_and_one_beat():
    entries = procfile_entries()
    assert set(entries) == {"release", "web", *QUEUES, "beat"}
    for queue in QUEUES:
        assert f"-Q {queue} " in entries[queue]
    assert entries["bulk"].startswith("chrt --idle 0 nice -n 10 ")
    assert "$PORT" in entries["web"]


def test_systemd_units_run_the_procfile_commands():
    """Each unit's ExecStart is its Procfile line, in systemd's escaping ($ as $$, % as %%)."""
    units = {path.name: path.read_text() for path in (DEPLOY / "systemd").glob("*.service")}
    entries = procfile_entries()

    def as_in_unit(command: str) -> str:
        return command.replace("%", "%%").replace("$", "$$").replace("$$PORT", "%i")

    assert as_in_unit(entries["web"]) in units["conversa-web@.service"]
    for queue in QUEUES:
        assert as_in_unit(entries[queue]) in units["conversa-worker@.service"]
    assert as_in_unit(entries["beat"]) in units["conversa-beat.service"]
    for text in units.values():
        assert "EnvironmentFile=/etc/conversa/env" in text


def test_systemd_units_and_the_bulk_drop_in_are_valid(tmp_path):
    """systemd's own parser accepts every unit, for an instance of each template, with its drop-ins."""
    shutil.copytree(DEPLOY / "systemd", tmp_path, dirs_exist_ok=True)
    units = ["conversa-web@8000.service", *(f"conversa-worker@{queue}.service" for queue in QUEUES)]
    result = subprocess.run(
        ["/usr/bin/systemd-analyze", "verify", "--man=no", *units, "conversa-beat.service", "conversa.target"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},  # ours first, then the system's
    )
    # Outside a booted systemd it also reports the host's own units; only ours matter.
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "conversa" in line]
    assert ours == []
    assert "CPUWeight=idle" in (tmp_path / "conversa-worker@bulk.service.d" / "idle.conf").read_text()


@pytest.mark.django_db(transaction=True)
def test_procfile_deployment_serves_delivers_and_stops_cleanly(deploy_env, evolution, settings, tmp_path):
    # The web process checks this password with Django's real hasher, not the tests' fast MD5.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9"  # the fake's connection webhooks go nowhere
    number = evolution_number(evolution)
    membership = MembershipFactory(organization=number.organization)
    contact = ContactFactory(organization=number.organization, phone="+5511987654321")
    chat = ChatFactory(organization=number.organization, number=number, contact=contact)

    entries = procfile_entries()
    port = free_port()
    env = {**deploy_env, "PORT": str(port)}
    release = subprocess.run(
        ["/bin/sh", "-c", entries["release"]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert release.returncode == 0, release.stdout + release.stderr
    static_root = Path(deploy_env["STATIC_ROOT"])
    ours = "css/conversa.css"
    assert (static_root / ours).read_bytes() == (ROOT / "static" / ours).read_bytes()
    assert (static_root / "admin" / "css" / "base.css").is_file()

    queues_empty()
    processes = [ProcfileProcess(name, entries[name], env, tmp_path) for name in ("web", *QUEUES, "beat")]
    try:
        base_url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return requests.get(f"{base_url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        def everyone_ready() -> bool:
            dead = [process.name for process in processes if process.process.poll() is not None]
            assert dead == [], "\n".join(f"--- {process.name}\n{process.log()[-3000:]}" for process in processes)
            said_ready = all(READY_MARKERS.get(process.name, "") in process.log() for process in processes)
            return said_ready and healthy()

        assert wait_until(everyone_ready, timeout=READY_TIMEOUT, interval=0.5), "\n".join(
            f"--- {process.name}\n{process.log()[-2000:]}" for process in processes
        )
        by_name = {process.name: process for process in processes}
        assert by_name["bulk"].priorities() == {(10, os.SCHED_IDLE)}
        assert by_name["sends"].priorities() == {(0, os.SCHED_OTHER)}
        # Over plain HTTP, as a load balancer calls it (exempt from the HTTPS redirect).
        health = requests.get(f"{base_url}/healthz", timeout=5)
        assert health.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
        # Anything else over plain HTTP is sent to HTTPS: production mode is really on.
        plain = requests.get(f"{base_url}/accounts/login/", allow_redirects=False, timeout=5)
        assert plain.status_code == 301
        assert plain.headers["Location"].startswith("https://")

        response = requests.post(
            f"{base_url}/api/v1/chats/{chat.pk}/messages/",
            json={"text": "Sent through the deployed web process"},
            auth=(membership.user.username, PASSWORD),
            headers={"X-Forwarded-Proto": "https"},  # as nginx says it (config/deploy/nginx.conf)
            timeout=30,
        )
        assert response.status_code == 202, response.text
        message_id = response.json()["id"]
        assert wait_until(
            lambda: Message.objects.filter(pk=message_id, status=Message.Status.SENT).exists(), timeout=60
        ), processes[1].log()[-3000:]
        sent = [raw["message"]["conversation"] for raw in evolution.instances[number.instance_name].messages]
        assert sent == ["Sent through the deployed web process"]
        assert Message.objects.get(pk=message_id).provider_message_id
    finally:
        killed = processes_stop(processes)
        queues_empty()
    assert killed == [], "these did not stop on SIGTERM: " + ", ".join(killed)
    assert [process.name for process in processes if process.is_group_alive()] == []


NGINX = "/usr/sbin/nginx"  # installed by `make test` (Debian's package), like Chromium


def nginx_conf_for_test(tmp_path: Path, *, web_port: int, http_port: int, https_port: int, static_root: Path) -> Path:
    """config/deploy/nginx.conf with only its CHANGE-marked values and ports pointed at this test."""
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(certificate), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    text = (DEPLOY / "nginx.conf").read_text()
    text = re.sub(
        r"upstream conversa_web \{.*?keepalive",
        f"upstream conversa_web {{\n    server 127.0.0.1:{web_port};\n    keepalive",
        text,
        flags=re.S,
    )
    text = text.replace("    listen 80;\n", f"    listen 127.0.0.1:{http_port};\n")
    text = text.replace("    listen 443 ssl http2;\n", f"    listen 127.0.0.1:{https_port} ssl http2;\n")
    text = re.sub(r"    listen \[::\]:\d+.*\n", "", text)
    text = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {certificate};", text)
    text = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", text)
    text = re.sub(r"alias \S+;", f"alias {static_root}/;", text)
    site = tmp_path / "conversa.conf"
    site.write_text(text)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"user root;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/nginx-error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n  proxy_temp_path {tmp_path}/proxy;\n"
        f"  include {site};\n}}\n"
    )
    return main


@pytest.mark.django_db(transaction=True)
def test_nginx_in_front_terminates_tls_serves_static_and_proxies_websockets(deploy_env, settings, tmp_path):
    """The shipped nginx.conf, in front of the Procfile's web process: what browsers and providers meet."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    membership = MembershipFactory()
    chat = ChatFactory(organization=membership.organization)
    browser = Client()
    browser.force_login(membership.user)  # a session row the web process reads (same SECRET_KEY)
    web_port, http_port, https_port = free_port(), free_port(), free_port()
    env = {**deploy_env, "PORT": str(web_port), "SECRET_KEY": settings.SECRET_KEY}
    static_root = Path(deploy_env["STATIC_ROOT"])
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert collected.returncode == 0, collected.stderr
    conf = nginx_conf_for_test(
        tmp_path, web_port=web_port, http_port=http_port, https_port=https_port, static_root=static_root
    )
    processes = [
        ProcfileProcess("web", procfile_entries()["web"], env, tmp_path),
        ProcfileProcess("nginx", f"exec {NGINX} -c {conf} -g 'daemon off;'", env, tmp_path),
    ]
    https = f"https://127.0.0.1:{https_port}"
    certificate = str(tmp_path / "cert.pem")
    try:

        def answering() -> bool:
            try:
                return requests.get(f"{https}/healthz", timeout=2, verify=certificate).status_code == 200
            except requests.RequestException:
                return False

        assert wait_until(answering, timeout=60, interval=0.3), "\n".join(
            process.log()[-2000:] for process in processes
        )
        # Plain HTTP goes to HTTPS at nginx already.
        plain = requests.get(f"http://127.0.0.1:{http_port}/accounts/login/", allow_redirects=False, timeout=5)
        assert plain.status_code == 301
        assert plain.headers["Location"].startswith("https://")
        # Django sees HTTPS through X-Forwarded-Proto: the page itself, not a redirect to it.
        login_page = requests.get(f"{https}/accounts/login/", allow_redirects=False, timeout=5, verify=certificate)
        assert login_page.status_code == 200
        # Static files come from STATIC_ROOT through nginx (production Django serves none).
        static = requests.get(f"{https}/static/css/conversa.css", timeout=5, verify=certificate)
        assert static.status_code == 200
        assert static.content == (ROOT / "static" / "css" / "conversa.css").read_bytes()
        assert "X-Request-ID" not in static.headers  # not Django's answer
        # A webhook larger than nginx's default 1 MiB reaches Django, which refuses it past its own limit.
        big = requests.post(
            f"{https}/webhooks/fake/{chat.number.instance_name}/",
            data=b"x" * (17 * 1024 * 1024),
            timeout=60,
            verify=certificate,
        )
        assert big.status_code == 413
        assert big.json()["error"]["code"]

        frames = asyncio.run(
            inbox_frames_while_sending(
                https_port, browser.cookies["sessionid"].value, certificate, chat.pk, membership.user.username
            )
        )
        assert frames[0]["type"] == "ready"
        assert any(frame.get("event", {}).get("type") == "message.created" for frame in frames[1:]), frames
    finally:
        killed = processes_stop(processes)
    assert killed == []
    assert [process.name for process in processes if process.is_group_alive()] == []


async def inbox_frames_while_sending(https_port: int, session_id: str, certificate: str, chat_id: int, username: str):
    """Open the inbox socket through nginx, send a message through nginx, return the frames seen."""
    import ssl

    import websockets

    context = ssl.create_default_context(cafile=certificate)
    url = f"wss://127.0.0.1:{https_port}/ws/inbox/"
    headers = {"Cookie": f"sessionid={session_id}", "Origin": f"https://127.0.0.1:{https_port}"}
    frames = []
    async with websockets.connect(url, ssl=context, additional_headers=headers, open_timeout=10) as socket_:
        frames.append(json.loads(await asyncio.wait_for(socket_.recv(), timeout=10)))
        response = await asyncio.to_thread(
            requests.post,
            f"https://127.0.0.1:{https_port}/api/v1/chats/{chat_id}/messages/",
            json={"text": "Through nginx"},
            auth=(username, PASSWORD),
            timeout=30,
            verify=certificate,
        )
        assert response.status_code == 202, response.text
        deadline = asyncio.get_running_loop().time() + 15
        while not any(frame.get("event", {}).get("type") == "message.created" for frame in frames[1:]):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                frames.append(json.loads(await asyncio.wait_for(socket_.recv(), timeout=remaining)))
            except TimeoutError:
                break
    return frames
