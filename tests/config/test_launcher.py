"""End to end: `python -m config.launcher` (what `make run` runs) in embedded mode, as a user sees it."""

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from messaging.demo import DEMO_AGENT_USERNAME

BASE_DIR = Path(__file__).resolve().parents[2]
BANNER_TIMEOUT = 120
STOP_TIMEOUT = 20


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _process_table() -> dict[int, tuple[int, str, int]]:
    """Return pid → (parent pid, state, start time) for every process, read from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), fields[0], int(fields[19]))
    return table


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _still_running(processes: dict[int, int]) -> dict[int, str]:
    """Return those of `processes` (pid → start time) that still run, with their command lines."""
    table = _process_table()
    return {
        pid: _command_line(pid)
        for pid, started in processes.items()
        if pid in table and table[pid][2] == started and table[pid][1] != "Z"
    }


class LauncherRun:
    """The launcher as a subprocess in its own process group, as a terminal runs `make run`."""

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        self.port = _free_port()
        # Embedded mode: no database, Redis or broker URL, so SQLite and the embedded Redis are used.
        self.env = {
            name: value
            for name, value in os.environ.items()
            if name not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")
        }
        self.env.update(CONVERSA_VAR_DIR=str(var_dir), CONVERSA_HOST="127.0.0.1", CONVERSA_PORT=str(self.port))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "config.launcher"],
            cwd=BASE_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            process_group=0,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output)
            if match:
                return match
            if self.process.poll() is not None:
                self._reader.join(5)
                match = re.search(pattern, self.output)
                if match:
                    return match
                pytest.fail(f"launcher exited ({self.process.returncode}) before {pattern!r}:\n{self.output}")
            time.sleep(0.2)
        pytest.fail(f"no {pattern!r} within {timeout} s:\n{self.output}")

    def descendants(self) -> dict[int, int]:
        """Return pid → start time of every process below the launcher, now."""
        table = _process_table()
        found, frontier = {}, [self.process.pid]
        while frontier:
            parent = frontier.pop()
            for pid, (ppid, _state, started) in table.items():
                if ppid == parent and pid not in found:
                    found[pid] = started
                    frontier.append(pid)
        return found

    def interrupt(self) -> None:
        """Press Ctrl-C: the terminal sends SIGINT to the foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"launcher still running {timeout} s after being asked to stop:\n{self.output}")
        self._reader.join(5)
        return code

    def kill_everything(self) -> None:
        """Leave nothing behind when a test failed half-way."""
        if self.process.poll() is None:
            leftovers = self.descendants()
            self.process.kill()
            self.process.wait()
            for pid in _still_running(leftovers):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def launcher_start():
    runs = []

    def start(var_dir: Path) -> LauncherRun:
        run = LauncherRun(var_dir)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill_everything()


def _log_in(session: requests.Session, base_url: str, username: str, password: str) -> requests.Response:
    login_url = base_url + "accounts/login/"
    login_page = session.get(login_url, timeout=10)
    assert login_page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)[1]
    return session.post(
        login_url,
        data={"csrfmiddlewaretoken": token, "username": username, "password": password},
        headers={"Referer": login_url},
        timeout=10,
    )


def _http_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only, never through a proxy from the environment
    return session


def test_make_run_serves_the_demo_stops_on_ctrl_c_and_keeps_data_for_the_next_run(tmp_path, launcher_start):
    var_dir = tmp_path / "var"

    # First run: fresh var dir, so migrations, periodic tasks and the demo are all created.
    first = launcher_start(var_dir)
    first.wait_for(r"Press Ctrl-C to stop", BANNER_TIMEOUT)
    base_url = first.wait_for(r"Conversa is running at (http://127\.0\.0\.1:\d+/)", 1)[1]
    redis_url = first.wait_for(r"Redis:\s+(redis://127\.0\.0\.1:\d+/0) \(embedded", 1)[1]
    agent_password = first.wait_for(rf"{DEMO_AGENT_USERNAME} / (\S+)", 1)[1]
    assert f"Database: SQLite {var_dir / 'conversa.sqlite3'}" in first.output
    assert "Periodic task crm.expired_sessions_clear: created" in first.output

    session = _http_session()
    home = _log_in(session, base_url, DEMO_AGENT_USERNAME, agent_password)
    assert home.status_code == 200
    assert home.url == base_url
    assert "Demo Clinic" in home.text

    # One worker per queue and beat are up, and the bulk worker really runs the bulk queue's tasks
    # against the shared database: enqueue the sessions task through the embedded Redis (the router
    # sends it to `bulk`) and watch an expired row go.
    first.wait_for(r"worker\s+\|.*sends@\S+ ready\.", 60)
    first.wait_for(r"inbound\s+\|.*inbound@\S+ ready\.", 60)
    first.wait_for(r"bulk\s+\|.*bulk@\S+ ready\.", 60)
    first.wait_for(r"beat\s+\|.*beat: Starting\.\.\.", 60)
    database = sqlite3.connect(var_dir / "conversa.sqlite3", timeout=20)
    with database:
        database.execute(
            "INSERT INTO django_session (session_key, session_data, expire_date) VALUES (?, ?, ?)",
            ("expiredbylaunchertest", "", "2000-01-01 00:00:00"),
        )
    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "call", "crm.tasks.expired_sessions_clear"],
        cwd=BASE_DIR,
        env={**first.env, "REDIS_URL": redis_url},
        check=True,
        capture_output=True,
        timeout=60,
    )
    deadline = time.monotonic() + 30
    while database.execute(
        "SELECT count(*) FROM django_session WHERE session_key = 'expiredbylaunchertest'"
    ).fetchone()[0]:
        assert time.monotonic() < deadline, f"the worker did not run the task:\n{first.output}"
        time.sleep(0.2)
    assert database.execute("SELECT count(*) FROM django_session").fetchone()[0] == 1  # the agent's own session
    database.close()

    # Ctrl-C stops everything: redis, uvicorn, the worker with its pool children, beat.
    processes = first.descendants()
    command_lines = [_command_line(pid) for pid in processes]
    assert any("redis-server" in line for line in command_lines), command_lines
    assert any("uvicorn" in line for line in command_lines), command_lines
    for queue, processes_at_least in (("sends", 3), ("inbound", 2), ("bulk", 2)):  # main + its pool children
        assert sum(f" -Q {queue} " in line for line in command_lines) >= processes_at_least, command_lines
    assert any(" beat " in line for line in command_lines), command_lines
    first.interrupt()
    assert first.wait_exit(STOP_TIMEOUT) == 0, first.output
    assert _still_running(processes) == {}
    assert "Stopped." in first.output

    # Second run on the same var dir: the data is kept and the demo is not created again.
    second = launcher_start(var_dir)
    second.wait_for(r"Press Ctrl-C to stop", BANNER_TIMEOUT)
    assert f"{DEMO_AGENT_USERNAME} (exists" in second.output
    assert f"{DEMO_AGENT_USERNAME} / " not in second.output
    assert "Periodic task crm.expired_sessions_clear: exists, left as it is" in second.output
    base_url = second.wait_for(r"Conversa is running at (http://127\.0\.0\.1:\d+/)", 1)[1]
    home = _log_in(_http_session(), base_url, DEMO_AGENT_USERNAME, agent_password)
    assert home.url == base_url
    assert "Demo Clinic" in home.text

    # A process dying on its own (beat here) stops all the others and fails the launcher.
    second.wait_for(r"beat\s+\|.*beat: Starting\.\.\.", 60)
    processes = second.descendants()
    beat_pid = next(pid for pid in processes if " beat " in _command_line(pid))
    os.kill(beat_pid, signal.SIGKILL)
    assert second.wait_exit(STOP_TIMEOUT) == 1
    assert "The beat process stopped unexpectedly (killed by SIGKILL); stopping the others." in second.output
    assert _still_running(processes) == {}


def test_launcher_on_a_taken_port_names_the_variable_to_change(tmp_path):
    env = {name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "REDIS_URL")}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env.update(CONVERSA_VAR_DIR=str(tmp_path / "var"), CONVERSA_HOST="127.0.0.1", CONVERSA_PORT=str(port))
        result = subprocess.run(
            [sys.executable, "-m", "config.launcher"],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in result.stdout
    assert "CONVERSA_PORT" in result.stdout
    assert not (tmp_path / "var" / "redis").exists()  # it stopped before starting anything
