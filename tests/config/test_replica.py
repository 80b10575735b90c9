"""Read-heavy views read the replica; writes, reads after a write and a browser that just wrote use the primary.

Two real PostgreSQL databases (no replication here: each holds its own rows, so the answer tells
which one was read). The router's opt-in keeps every other read on the primary.
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from config.db_router import PIN_COOKIE

ROOT = Path(__file__).resolve().parents[2]


def _server_url(database: str) -> str:
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    user = params.get("USER") or "postgres"
    return f"postgresql://{user}{password}@{params.get('HOST') or '127.0.0.1'}:{params.get('PORT') or 5432}/{database}"


@pytest.fixture
def primary_and_replica(db):
    tag = uuid.uuid4().hex[:8]
    primary, replica = f"replica_test_primary_{tag}", f"replica_test_replica_{tag}"
    admin = _server_url("postgres")
    with psycopg.connect(admin, autocommit=True) as server:
        server.execute(f"CREATE DATABASE {primary}")
    environment = {**os.environ, "DATABASE_URL": _server_url(primary), "REDIS_URL": settings.REDIS_URL}
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=environment, check=True)
        with psycopg.connect(admin, autocommit=True) as server:
            server.execute(f"CREATE DATABASE {replica} TEMPLATE {primary}")  # the same schema, then apart
        for database, code in ((primary, "probe-on-primary"), (replica, "probe-on-replica")):
            with psycopg.connect(_server_url(database), autocommit=True) as rows:
                rows.execute(
                    "INSERT INTO crm_plan (code, name, max_numbers, api_requests_per_minute, default_provider)"
                    " VALUES (%s, 'P', 1, 1, 'fake')",
                    [code],
                )
        yield {**environment, "DATABASE_REPLICA_URL": _server_url(replica)}
    finally:
        with psycopg.connect(admin, autocommit=True) as server:
            for database in (primary, replica):
                server.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def test_reads_go_to_the_replica_only_where_allowed_and_writes_to_the_primary(primary_and_replica):
    result = subprocess.run(
        [sys.executable, "-m", "tests.config.replica_probe"],
        cwd=ROOT,
        env=primary_and_replica,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {
        "undecorated": ["probe-on-primary"],
        "replica_view": ["probe-on-replica"],
        # The write went to the primary, and the read after it in the same request too.
        "after_a_write": ["probe-on-primary", "probe-written"],
        "pinned_browser": ["probe-on-primary", "probe-written"],
        "post_pins_the_browser": True,
        "get_pins_nothing": False,
    }


@pytest.mark.django_db
def test_without_a_replica_no_browser_is_pinned(client):
    from django.db import connections

    assert "replica" not in connections.settings  # no replica in this process: no pin cookie either
    response = client.post("/accounts/login/", {"username": "nobody", "password": "x"})
    assert PIN_COOKIE not in response.cookies
