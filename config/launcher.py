"""`make run`: set up Conversa and run web (HTTP + WebSockets), workers and beat until Ctrl-C.

    python -m config.launcher

With no REDIS_URL an embedded Redis is started (config/embedded_redis.py); with no DATABASE_URL the
settings use SQLite under var/. Then: migrate, register the periodic tasks, ensure the demo
workspace, start web, one Celery worker per queue (sends, inbound, bulk) and beat, wait for the
login page and print where to log in.

Each process runs in its own process group, so a Ctrl-C in the terminal reaches only this launcher,
which then stops them all (SIGTERM to each group, SIGKILL to what remains after STOP_TIMEOUT
seconds or at a second Ctrl-C) and stops Redis last, once the worker has handed its unfinished
tasks back. A process that exits on its
own stops all the others and the launcher exits non-zero. On Linux the children also get SIGTERM
if the launcher itself is killed, so a crashed run leaves nothing holding the port or the files.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
STOP_TIMEOUT = 10.0
READY_TIMEOUT = 90.0
POLL_INTERVAL = 0.1
LOGIN_PATH = "/accounts/login/"


class LaunchError(Exception):
    """A problem the user must fix; the message says which and how."""


class Stopped(Exception):  # noqa: N818 - a request, not an error
    """The user asked to stop (Ctrl-C, SIGTERM, SIGHUP) while the launcher was starting things."""


class StopSignals:
    """Count stop signals instead of raising in the middle of whatever the launcher is doing."""

    def __init__(self) -> None:
        self.count = 0

    def install(self) -> StopSignals:
        for signal_number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signal_number, self._received)
        return self

    def _received(self, signal_number: int, frame) -> None:
        self.count += 1

    @property
    def requested(self) -> bool:
        return self.count > 0


class Console:
    """Print whole lines from several threads without interleaving them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def line(self, text: str = "", *, prefix: str = "") -> None:
        with self._lock:
            try:
                sys.stdout.write(f"{prefix}{text}\n")
                sys.stdout.flush()
            except (OSError, ValueError):
                # The terminal is gone (closed window, broken pipe): stopping must go on regardless.
                pass

    def say(self, text: str) -> None:
        self.line(text, prefix="conversa | ")


def _parent_death_signal_setter() -> Callable[[], None] | None:
    """Return a preexec_fn asking Linux to SIGTERM the child when this launcher dies, else None."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    launcher_pid = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != launcher_pid:  # the launcher died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class Child:
    """A process in its own process group whose output is forwarded line by line.

    Start every child before calling `forward()`: preexec_fn is only safe while no other thread runs.
    """

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], preexec_fn, *, ready_marker: str | None = None
    ) -> None:
        self.name = name
        # Text of the log line by which the process says it is ready to work.
        self.ready_marker = ready_marker
        self.has_said_ready = threading.Event()
        self.process = subprocess.Popen(  # noqa: S603 - argv built by this module, no shell
            argv,
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            process_group=0,
            preexec_fn=preexec_fn,
        )
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def forward(self, sink: Callable[[str], None]) -> None:
        def read() -> None:
            for line in self.process.stdout:
                if self.ready_marker and self.ready_marker in line:
                    self.has_said_ready.set()
                sink(line.rstrip("\n"))

        self._reader = threading.Thread(target=read, name=f"output-{self.name}", daemon=True)
        self._reader.start()

    def output_drain(self, timeout: float = 2.0) -> None:
        if self._reader is not None:
            self._reader.join(timeout)

    def group_signal(self, signal_number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal_number)

    def is_group_alive(self) -> bool:
        """Return whether the process, or anything left in its group (a pool child), still runs."""
        if self.process.poll() is None:
            return True
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def exit_describe(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"


def children_stop(children: list[Child], signals: StopSignals, console: Console) -> None:
    """SIGTERM every child's group, SIGKILL what remains after STOP_TIMEOUT (or at a second Ctrl-C)."""
    for child in children:
        child.group_signal(signal.SIGTERM)
    signals_before = signals.count
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(child.is_group_alive() for child in children):
        if time.monotonic() >= deadline or signals.count > signals_before:
            for child in children:
                if child.is_group_alive():
                    console.say(f"{child.name} did not stop in time; killing it.")
                    child.group_signal(signal.SIGKILL)
            break
        time.sleep(POLL_INTERVAL)
    for child in children:
        child.process.wait()
        child.output_drain()


def _http_status(opener: urllib.request.OpenerDirector, url: str) -> int | None:
    """Return the HTTP status `url` answers with, or None when nothing answers yet."""
    try:
        with opener.open(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def port_check(host: str, port: int) -> None:
    """Raise LaunchError when `port` cannot be bound on `host`, naming the variable to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # The same option uvicorn sets, so a port only in TIME_WAIT is not reported as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise LaunchError(
                f"Cannot listen on {host}:{port} ({error.strerror}). Another program (another `make run`?) "
                f"holds that port: stop it, or choose a free port with CONVERSA_PORT, "
                f"e.g. CONVERSA_PORT={port + 1} make run."
            ) from error


def _password_hide(url: str) -> str:
    """Return `url` fit for printing: a password in it is replaced by ***."""
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def _browser_host(host: str) -> str:
    """Return the address a browser on this machine uses to reach a server bound to `host`."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - recognizing the wildcard, not binding it
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _idle_priority() -> list[str]:
    """The command prefix that runs a process at the lowest CPU priority this system offers."""
    lowest = ["nice", "-n", "10"]
    return ["chrt", "--idle", "0", *lowest] if shutil.which("chrt") else lowest


def demo_seed_arguments(evolution_url: str, evolution_api_key: str) -> list[str]:
    """The `manage.py demo_seed` options for this run's fake Evolution server.

    As `--option=value`: a generated key may start with "-", which argparse would take for an option.
    """
    return [f"--evolution-url={evolution_url}", f"--evolution-api-key={evolution_api_key}"]


class Launcher:
    def __init__(self, console: Console, signals: StopSignals) -> None:
        self.console = console
        self.signals = signals
        self.children: list[Child] = []
        self.redis = None
        self.preexec_fn = _parent_death_signal_setter()

    def run(self) -> int:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        # Importing the settings also loads a developer's .env into os.environ (real variables win).
        from django.conf import settings

        var_dir = Path(settings.VAR_DIR).resolve()
        host = os.environ.get("CONVERSA_HOST") or "127.0.0.1"
        port_text = os.environ.get("CONVERSA_PORT") or "8000"
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise LaunchError(f"CONVERSA_PORT must be a port number (1-65535), not {port_text!r}.")
        port = int(port_text)
        port_check(host, port)

        env = dict(os.environ, PYTHONUNBUFFERED="1", CONVERSA_VAR_DIR=str(var_dir))
        redis_description = _password_hide(env.get("REDIS_URL", ""))
        if not redis_description:
            self._stop_check()
            from config.embedded_redis import EmbeddedRedis, EmbeddedRedisError

            self.redis = EmbeddedRedis(var_dir / "redis", preexec_fn=self.preexec_fn)
            self.console.say(
                f"REDIS_URL is not set: starting an embedded Redis with its files in {self.redis.data_dir}"
            )
            try:
                self.redis.start()
            except EmbeddedRedisError as error:
                raise LaunchError(str(error)) from error
            env["REDIS_URL"] = self.redis.url
            redis_description = f"{self.redis.url} (embedded, files in {self.redis.data_dir})"

        # Providers call back the URL we serve on, unless the user says where we are reachable.
        url = f"http://{_browser_host(host)}:{port}/"
        env.setdefault("PUBLIC_BASE_URL", url.rstrip("/"))
        evolution_url, evolution_api_key = self._fake_evolution_start(env)

        self._manage("migrate", "--noinput", env=env)
        self._manage("periodic_tasks_register", env=env)
        demo_lines = self._manage(
            "demo_seed", *demo_seed_arguments(evolution_url, evolution_api_key), env=env, capture=True
        )

        self._stop_check()
        from config.celery import QUEUE_BULK, QUEUE_INBOUND, QUEUE_SENDS

        python = sys.executable
        # -q drops Celery's start-up banners: their ASCII art would bury ours. Logs stay.
        celery = (python, "-m", "celery", "-q", "-A", "config")

        def celery_worker(queue: str, concurrency: int) -> list[str]:
            named = ("-Q", queue, "-n", f"{queue}@%h")
            return [*celery, "worker", "-l", "info", *named, "--concurrency", str(concurrency)]

        commands = {
            "web": (
                [
                    *(python, "-m", "uvicorn", "config.asgi:application", "--host", host, "--port", str(port)),
                    # Named rather than "auto": a missing WebSocket library fails here, not silently.
                    *("--ws", "websockets-sansio", "--lifespan", "off", "--timeout-graceful-shutdown", "5"),
                    # Inbox frames are small: compressing each one for every socket cost more CPU than
                    # the bytes it saved (a twentieth of the web process under bench/inbound.py).
                    *("--ws-per-message-deflate", "false"),
                ],
                None,  # ready when the login page answers
            ),
            # One worker per queue (config/celery.py), so a backlog in one never holds up another;
            # bulk work runs at a lower CPU priority, so it yields the cores to sends and ingest: SCHED_IDLE
            # where Linux has it (any other process preempts it at once; nice 10 alone still let a bulk
            # backlog add half to webhook latency in bench/backlog.py).
            "worker": (celery_worker(QUEUE_SENDS, settings.CELERY_WORKER_CONCURRENCY), " ready."),
            "inbound": (celery_worker(QUEUE_INBOUND, settings.CELERY_INBOUND_CONCURRENCY), " ready."),
            "bulk": ([*_idle_priority(), *celery_worker(QUEUE_BULK, settings.CELERY_BULK_CONCURRENCY)], " ready."),
            "beat": (
                [
                    *(*celery, "beat", "-l", "info"),
                    *("--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"),
                    # No pidfile (a crashed run would leave one behind and block the next start); the
                    # schedule file is unused by the DatabaseScheduler but kept out of the source tree.
                    *("--pidfile=", "--schedule", str(var_dir / "celerybeat-schedule")),
                ],
                "beat: Starting...",
            ),
        }
        for name, (argv, ready_marker) in commands.items():
            self.children.append(Child(name, argv, env, self.preexec_fn, ready_marker=ready_marker))
        for child in self.children:
            child.forward(lambda line, prefix=f"{child.name:<8} | ": self.console.line(line, prefix=prefix))

        self._ready_wait(url + LOGIN_PATH.lstrip("/"))
        self._banner(url, demo_lines, settings.DATABASES["default"], redis_description, var_dir)
        return self._supervise()

    def _fake_evolution_start(self, env: dict[str, str]) -> tuple[str, str]:
        """Start the fake Evolution API server the demo number lives on; return its URL and API key.

        The demo goes through the real Evolution adapter against this fake, so it exercises the
        same code paths as a real Evolution server. Its address line is read here, before any
        output thread exists (see Child): the manage.py commands that follow need the URL.
        """
        from config.embedded_redis import port_free_pick

        self._stop_check()
        api_key = secrets.token_urlsafe(16)
        argv = [sys.executable, "-m", "providers.fakes", "evolution", "--port", str(port_free_pick())]
        child = Child("evolution", [*argv, "--set", f"api_key={api_key}"], env, self.preexec_fn)
        self.children.append(child)
        for line in child.process.stdout:
            self.console.line(line.rstrip("\n"), prefix=f"{child.name:<8} | ")
            if " listening on " in line:
                return line.rsplit(" ", 1)[-1].strip(), api_key
        raise LaunchError(f"The fake Evolution server did not start ({child.exit_describe()}).")

    def _stop_check(self) -> None:
        if self.signals.requested:
            raise Stopped

    def _dead_child(self) -> Child | None:
        return next((child for child in self.children if child.process.poll() is not None), None)

    def _manage(self, *arguments: str, env: dict[str, str], capture: bool = False) -> list[str]:
        """Run a manage.py command to completion; return its output lines when `capture` is set."""
        self._stop_check()
        command = Child(arguments[0], [sys.executable, "manage.py", *arguments], env, self.preexec_fn)
        lines: list[str] = []
        prefix = f"{'setup':<8} | "
        command.forward(lines.append if capture else (lambda line: self.console.line(line, prefix=prefix)))
        while command.process.poll() is None:
            if self.signals.requested:
                children_stop([command], self.signals, self.console)
                raise Stopped
            time.sleep(POLL_INTERVAL)
        command.output_drain()
        if command.process.returncode != 0:
            for line in lines:
                self.console.line(line, prefix=prefix)
            raise LaunchError(
                f"`manage.py {' '.join(arguments)}` failed ({command.exit_describe()}); its output is above."
            )
        return lines

    def _ready_wait(self, login_url: str) -> None:
        """Return once the login page answers HTTP and worker and beat said they are ready.

        Raise LaunchError when a child dies or the web server does not answer in time; a worker or
        beat that is running but has not logged its ready line by then only earns a warning.
        """
        # Loopback only: never send this probe through a proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + READY_TIMEOUT
        status = None
        while True:
            self._stop_check()
            dead = self._dead_child()
            if dead is not None:
                raise LaunchError(
                    f"The {dead.name} process stopped while starting ({dead.exit_describe()}); its output is above."
                )
            if status is None:
                status = _http_status(opener, login_url)
                if status not in (None, 200):
                    self.console.say(f"Warning: {login_url} answered HTTP {status}, expected 200.")
            silent = [child.name for child in self.children if child.ready_marker and not child.has_said_ready.is_set()]
            if status is not None and not silent:
                return
            if time.monotonic() >= deadline:
                if status is None:
                    raise LaunchError(f"The web server did not answer {login_url} within {READY_TIMEOUT:g} s.")
                self.console.say(f"Warning: {' and '.join(silent)} did not report ready within {READY_TIMEOUT:g} s.")
                return
            time.sleep(0.25)

    def _banner(self, url: str, demo_lines: list[str], database: dict, redis: str, var_dir: Path) -> None:
        if database["ENGINE"] == "django.db.backends.sqlite3":
            database_description = f"SQLite {database['NAME']}"
        else:
            where = f"{database.get('HOST') or 'localhost'}:{database.get('PORT') or 'default port'}"
            database_description = f"{database['ENGINE'].rsplit('.', 1)[-1]} database {database['NAME']!r} at {where}"
        rule = "=" * 78
        lines = [
            rule,
            f"  Conversa is running at {url}",
            f"  Log in at {url}{LOGIN_PATH.lstrip('/')} with a demo user:",
            *(f"    {line.strip()}" for line in demo_lines),
            f"  Data:     {var_dir}",
            f"  Database: {database_description}",
            f"  Redis:    {redis}",
            "  Press Ctrl-C to stop.",
            rule,
        ]
        for line in lines:
            self.console.line(line)

    def _supervise(self) -> int:
        """Wait for Ctrl-C (return 0) or for a child to exit on its own (return 1)."""
        while True:
            if self.signals.requested:
                self.console.say("Stopping web, worker, beat and the fake Evolution server...")
                return 0
            dead = self._dead_child()
            if dead is not None:
                self.console.say(
                    f"The {dead.name} process stopped unexpectedly ({dead.exit_describe()}); stopping the others."
                )
                return 1
            time.sleep(POLL_INTERVAL)

    def shutdown(self) -> None:
        """Stop every child (each whole process group), then the embedded Redis."""
        try:
            children_stop(self.children, self.signals, self.console)
        finally:
            if self.redis is not None:
                self.redis.stop()


def main() -> int:
    signals = StopSignals().install()
    console = Console()
    launcher = Launcher(console, signals)
    code = 1
    try:
        code = launcher.run()
    except Stopped:
        code = 0
    except LaunchError as error:
        console.say(f"Error: {error}")
        code = 1
    except Exception as error:
        console.say(f"Error: {error}")
        raise
    finally:
        launcher.shutdown()
        console.say("Stopped." if code == 0 else "Stopped after an error (see above).")
    return code


if __name__ == "__main__":
    sys.exit(main())
