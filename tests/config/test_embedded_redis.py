import socket
from pathlib import Path

import pytest
import redis

from config.embedded_redis import EmbeddedRedis, EmbeddedRedisError


def _is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _redis_servers_on(port: int) -> list[int]:
    """Return the pids of redis-server processes started with `--port <port>`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"redis-server") and str(port).encode() in argv:
            pids.append(int(entry.name))
    return pids


def test_embedded_redis_answers_ping_and_stop_leaves_no_process(tmp_path):
    with EmbeddedRedis(tmp_path / "redis") as server:
        pid = server.pid
        assert server.url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(server.url)
        assert client.ping() is True
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
        client.close()
        assert _is_running(pid)

    assert not _is_running(pid)
    assert server.process is None


def test_embedded_redis_keeps_its_data_across_restarts(tmp_path):
    """Queued Celery messages survive `make run` restarts: the server keeps an append-only file."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        client.lpush("celery", "a queued task")
        client.close()

    with EmbeddedRedis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        assert client.lrange("celery", 0, -1) == [b"a queued task"]
        client.close()


def test_embedded_redis_stop_also_ends_it_when_the_block_raises(tmp_path):
    pids = []

    def use_then_fail():
        with EmbeddedRedis(tmp_path / "redis") as server:
            pids.append(server.pid)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        use_then_fail()

    assert pids
    assert not _is_running(pids[0])


def test_embedded_redis_on_a_taken_port_fails_clearly_and_leaves_nothing(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = EmbeddedRedis(tmp_path / "redis", port=port, ready_timeout=5)

        with pytest.raises(EmbeddedRedisError, match=f"before answering on port {port}") as failure:
            server.start()

    assert "Address already in use" in str(failure.value)
    assert server.process is None
    assert _redis_servers_on(port) == []
