"""Inbox benchmark: server time of the inbox, chat and older-history pages on 10,000 chats and 1,000,000 messages.

Creates PostgreSQL database `bench_inbox` on BENCH_PG (migrated here) and loads it with
INSERT ... SELECT generate_series (no ORM): one organization and number, `--chats` contacts and
chats, `--messages` messages of which `--deep` belong to one chat, so an older-history page can be
asked for at depth 0 and at depth `--depth` of that one chat. Then, in this process (Django's test
Client, no network, after warm-up), it times each page `--samples` times, and beside it the raw SQL
of the same page: the SELECTs the view ran, captured once and replayed through psycopg in the same
run (writes are not replayed). It also times the bare keyset queries written by hand (the inbox
list on `chat_inbox`, a history page on `message_chat_history`), which need no view at all.

Targets (issue 6): p95 <= 50 ms for each page; the history page at depth 900,000 within 1.5x of
depth 0. The last line printed is one JSON object with every figure.

    .venv/bin/python bench/inbox.py                       # full size: 10,000 chats, 1,000,000 messages
    .venv/bin/python bench/inbox.py --chats 1000 --messages 100000 --deep 91000 --depth 90000
    .venv/bin/python bench/inbox.py --reuse --explain     # keep the loaded data; print query plans
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_DATABASE = "bench_inbox"
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DATABASE_URL = urlunsplit(urlsplit(PG)._replace(path=f"/{BENCH_DATABASE}"))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
ENV = {
    **os.environ,
    "DATABASE_URL": DATABASE_URL,
    "REDIS_URL": REDIS_URL,
    "CELERY_BROKER_URL": REDIS_URL,
    "CACHE_KEY_PREFIX": "bench-inbox",
    "LOG_LEVEL": "WARNING",
    "SECRET_KEY": "bench-only-secret",
    "DEBUG": "false",
}
os.environ.update(ENV)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
PAGE_P95_TARGET_MS = 50.0
DEPTH_RATIO_TARGET = 1.5
PAGE_SIZE = 50


# --- the database and its data ---------------------------------------------------------------------------
def database_prepare(*, reuse: bool) -> None:
    """Create bench_inbox afresh (or keep it, with --reuse) and bring it to the latest migration."""
    if not reuse:
        with psycopg.connect(urlunsplit(urlsplit(PG)._replace(path="/postgres")), autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
            connection.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=ENV, check=True, timeout=600)


def _insert_select(cursor, model, expressions: dict[str, str], source: str, params: dict) -> int:
    """INSERT INTO the model's table SELECT `expressions` FROM `source`; other columns get their default.

    Columns added later by other features still get a value (the model field's default, or NULL),
    so the loader keeps working as the models grow.
    """
    from django.db import connection

    columns, values = [], []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.column in expressions:
            values.append(expressions[field.column])
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            values.append("now()")
        else:
            name = f"default_{field.column}"
            params[name] = field.get_db_prep_save(field.get_default(), connection)
            values.append(f"%({name})s")
    sql = f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {source}"  # noqa: S608
    cursor.execute(sql, params)
    return cursor.rowcount


def data_load(*, chats: int, messages: int, deep: int) -> dict:
    """Load the organization, its chats and messages; return the ids the timings need."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from crm.models import Chat, Contact, Membership, Organization, Plan, WhatsAppNumber
    from messaging.models import Message

    started = time.perf_counter()
    plan = Plan.objects.get(code="pro")
    organization = Organization.objects.create(name="Bench Inbox", slug="bench-inbox", plan=plan)
    user = get_user_model().objects.create_user(username="bench-agent", password="bench-password-1")  # noqa: S106
    membership = Membership.objects.create(organization=organization, user=user, role=Membership.Role.ADMIN)
    number = WhatsAppNumber.objects.create(
        organization=organization,
        name="Bench",
        provider="fake",
        instance_name="bench-inbox",
        phone="+15550100200",
        state=WhatsAppNumber.State.CONNECTED,
    )
    base = {"organization": organization.pk, "number": number.pk, "member": membership.pk, "chats": chats}
    with transaction.atomic(), connection.cursor() as cursor:
        # The rows are consistent by construction: skip the per-row foreign key triggers.
        cursor.execute("SET LOCAL session_replication_role = replica")
        _insert_select(
            cursor,
            Contact,
            {
                "organization_id": "%(organization)s",
                "name": "'Contact ' || g",
                "phone": "'+5511' || lpad(g::text, 9, '0')",
                "created_at": "now()",
            },
            "generate_series(1, %(chats)s) AS g",
            dict(base),
        )
        # Chat g talks to contact g; chat 1 is the deep one. 70% open, 20% pending, 10% resolved;
        # a third assigned to the bench member.
        _insert_select(
            cursor,
            Chat,
            {
                "organization_id": "%(organization)s",
                "number_id": "%(number)s",
                "contact_id": "c.id",
                "status": "CASE WHEN c.n %% 10 < 7 OR c.n = 1 THEN 'open' WHEN c.n %% 10 < 9 THEN 'pending' "
                "ELSE 'resolved' END",
                "assignee_id": "CASE WHEN c.n %% 3 = 0 THEN %(member)s END",
                "unread_count": "c.n %% 7",
                "created_at": "now()",
                "updated_at": "now()",
            },
            "(SELECT id, row_number() OVER (ORDER BY id) AS n FROM crm_contact"
            " WHERE organization_id = %(organization)s) AS c",
            dict(base),
        )
        cursor.execute("SELECT min(id) FROM crm_chat WHERE organization_id = %s", [organization.pk])
        (first_chat,) = cursor.fetchone()
        message_columns = {
            "organization_id": "%(organization)s",
            "number_id": "%(number)s",
            "direction": "CASE WHEN g %% 2 = 0 THEN 'in' ELSE 'out' END",
            "type": "'text'",
            "text": "'Message ' || g || ' about the appointment on Friday'",
            "status": "CASE WHEN g %% 2 = 0 THEN 'received' ELSE 'read' END",
            "created_at": "now()",
            "updated_at": "now()",
        }
        # The deep chat: one message a second, ending an hour ago, ids rising with time.
        _insert_select(
            cursor,
            Message,
            {
                **message_columns,
                "chat_id": "%(chat)s",
                "timestamp": "now() - interval '1 hour' - (%(deep)s - g) * interval '1 second'",
            },
            "generate_series(1, %(deep)s) AS g",
            {**base, "chat": first_chat, "deep": deep},
        )
        # The rest round-robin over the other chats, ending now: their last messages differ.
        rest = messages - deep
        _insert_select(
            cursor,
            Message,
            {
                **message_columns,
                "chat_id": "%(first_chat)s + 1 + (g %% (%(chats)s - 1))",
                "timestamp": "now() - (%(rest)s - g) * interval '1 second'",
            },
            "generate_series(1, %(rest)s) AS g",
            {**base, "first_chat": first_chat, "rest": rest},
        )
        cursor.execute(
            """
            UPDATE crm_chat AS c SET last_message_at = m.last_at, last_message_preview = left(m.preview, 200)
            FROM (SELECT DISTINCT ON (chat_id) chat_id, timestamp AS last_at, text AS preview
                  FROM messaging_message WHERE organization_id = %s ORDER BY chat_id, timestamp DESC, id DESC) AS m
            WHERE c.id = m.chat_id
            """,
            [organization.pk],
        )
    connection.close()
    with psycopg.connect(DATABASE_URL, autocommit=True) as raw:
        raw.execute("VACUUM ANALYZE crm_contact")
        raw.execute("VACUUM ANALYZE crm_chat")
        raw.execute("VACUUM ANALYZE messaging_message")
    return {"seconds": time.perf_counter() - started}


def dataset_describe(depth: int) -> dict:
    """Return the ids and cursors the timings use, read from the loaded data."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM crm_organization WHERE slug = 'bench-inbox'")
        organization_id = cursor.fetchone()[0]
        cursor.execute(
            "SELECT chat_id, count(*) FROM messaging_message WHERE organization_id = %s "
            "GROUP BY chat_id ORDER BY count(*) DESC LIMIT 1",
            [organization_id],
        )
        deep_chat, deep_messages = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM crm_chat WHERE organization_id = %s", [organization_id])
        (chats,) = cursor.fetchone()
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = 'messaging_message'")
        (messages,) = cursor.fetchone()
        cursors = {}
        for name, offset in (("depth_0", 0), (f"depth_{depth}", depth)):
            cursor.execute(
                "SELECT timestamp, id FROM messaging_message WHERE chat_id = %s "
                "ORDER BY timestamp DESC, id DESC OFFSET %s LIMIT 1",
                [deep_chat, offset],
            )
            cursors[name] = cursor.fetchone()
    return {
        "organization": organization_id,
        "deep_chat": deep_chat,
        "deep_messages": deep_messages,
        "chats": chats,
        "messages": messages,
        "cursors": cursors,
    }


# --- timings ------------------------------------------------------------------------------------------
def _summary(samples: list[float]) -> dict:
    from bench.baselines import percentile

    return {"p50_ms": round(percentile(samples, 0.50), 2), "p95_ms": round(percentile(samples, 0.95), 2)}


def _timed(calls: dict, *, samples: int, warm_up: int) -> dict[str, list[float]]:
    """Time each call `samples` times, round-robin: on a shared machine every measure sees the same load.

    Besides wall time (`<name>`), record this thread's CPU time (`<name> cpu`): the Python side of a
    page without the time it waited for a core or for PostgreSQL.
    """
    for _ in range(warm_up):
        for call in calls.values():
            call()
    timings = {key: [] for name in calls for key in (name, f"{name} cpu")}
    for _ in range(samples):
        for name, call in calls.items():
            before, before_cpu = time.perf_counter(), time.thread_time()
            call()
            timings[name].append((time.perf_counter() - before) * 1000)
            timings[f"{name} cpu"].append((time.thread_time() - before_cpu) * 1000)
    return timings


def page_probe(client, url: str, raw: psycopg.Connection) -> dict:
    """Return a GET of `url` in process, and a replay through psycopg of the SELECTs it runs."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def get():
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")

    get()
    with CaptureQueriesContext(connection) as captured:
        get()
    # Read now: every request (the next get()) clears the connection's query log.
    queries = [query["sql"] for query in captured.captured_queries]
    selects = [sql for sql in queries if sql.lstrip().upper().startswith("SELECT")]

    def replay():
        for sql in selects:
            raw.execute(sql).fetchall()

    return {"get": get, "replay": replay, "queries": len(queries), "selects": selects}


KEYSET_INBOX_SQL = """
SELECT c.id, c.status, c.unread_count, c.last_message_at, c.last_message_preview, ct.name, ct.phone
FROM crm_chat c JOIN crm_contact ct ON ct.id = c.contact_id
WHERE c.organization_id = %s AND c.status = 'open'
ORDER BY c.last_message_at DESC, c.id DESC LIMIT %s
"""
KEYSET_HISTORY_SQL = """
SELECT id, direction, type, text, status, timestamp FROM messaging_message
WHERE chat_id = %s AND (timestamp, id) < (%s, %s)
ORDER BY timestamp DESC, id DESC LIMIT %s
"""


def keyset_sql_time(raw: psycopg.Connection, dataset: dict, depth: int, *, samples: int, warm_up: int) -> dict:
    """The bare keyset queries, written by hand: what the pages cost at the least."""
    calls = {"inbox": lambda: raw.execute(KEYSET_INBOX_SQL, [dataset["organization"], PAGE_SIZE + 1]).fetchall()}
    for name in ("depth_0", f"depth_{depth}"):
        params = [dataset["deep_chat"], *dataset["cursors"][name], PAGE_SIZE + 1]
        calls[f"history_{name}"] = lambda params=params: raw.execute(KEYSET_HISTORY_SQL, params).fetchall()
    timings = _timed(calls, samples=samples, warm_up=warm_up)
    return {name: _summary(timings[name]) for name in calls}


def pages_time(dataset: dict, depth: int, raw: psycopg.Connection, *, samples: int, warm_up: int) -> dict | None:
    """Time the inbox developer's pages; None when they are not in this tree yet."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import NoReverseMatch, reverse

    try:
        from messaging.selectors import cursor_of

        urls = {
            "inbox": reverse("crm:inbox"),
            "chat": reverse("crm:chat-detail", args=[dataset["deep_chat"]]),
        }
        history = reverse("crm:chat-messages", args=[dataset["deep_chat"]])
    except (ImportError, NoReverseMatch):
        return None
    for name in ("depth_0", f"depth_{depth}"):
        urls[f"history_{name}"] = f"{history}?before={cursor_of(*dataset['cursors'][name])}"
    client = Client(HTTP_HOST="127.0.0.1")  # an ALLOWED_HOSTS name; no request leaves the process
    client.force_login(get_user_model().objects.get(username="bench-agent"))
    probes = {name: page_probe(client, url, raw) for name, url in urls.items()}
    calls = {}
    for name, probe in probes.items():
        calls[name], calls[f"{name} sql"] = probe["get"], probe["replay"]
    timings = _timed(calls, samples=samples, warm_up=warm_up)
    pages = {}
    for name, probe in probes.items():
        page, sql = _summary(timings[name]), _summary(timings[f"{name} sql"])
        cpu = _summary(timings[f"{name} cpu"])
        pages[name] = {
            **page,
            "cpu_p50_ms": cpu["p50_ms"],
            "cpu_p95_ms": cpu["p95_ms"],
            "queries": probe["queries"],
            "selects_replayed": len(probe["selects"]),
            "sql_p50_ms": sql["p50_ms"],
            "sql_p95_ms": sql["p95_ms"],
            "ratio_p50": round(page["p50_ms"] / sql["p50_ms"], 1) if sql["p50_ms"] else None,
            "_selects": probe["selects"],
        }
    return pages


def plans_print(raw: psycopg.Connection, pages: dict | None, dataset: dict, depth: int) -> None:
    """EXPLAIN ANALYZE each captured SELECT (or the hand-written keyset queries): where the time goes."""
    statements = []
    if pages:
        for name, figures in pages.items():
            statements += [(name, sql, None) for sql in figures["_selects"]]
    moment, pk = dataset["cursors"][f"depth_{depth}"]
    statements.append(("keyset inbox", KEYSET_INBOX_SQL, [dataset["organization"], PAGE_SIZE + 1]))
    statements.append(("keyset history deep", KEYSET_HISTORY_SQL, [dataset["deep_chat"], moment, pk, PAGE_SIZE + 1]))
    for name, sql, params in statements:
        plan = raw.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params).fetchall()
        total = next((row[0] for row in plan if row[0].startswith("Execution Time")), "")
        print(f"-- {name}: {total}\n{' '.join(sql.split())[:300]}")
        for (line,) in plan[:12]:
            print(f"   {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--deep", type=int, default=910_000, help="messages of the one deep chat")
    parser.add_argument("--depth", type=int, default=900_000, help="history depth of the deep page")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--warm-up", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="keep bench_inbox as loaded by an earlier run")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of every query")
    args = parser.parse_args()
    if not (args.depth + PAGE_SIZE < args.deep < args.messages and args.chats >= 2):
        parser.error("need depth + 50 < deep < messages and at least 2 chats")

    load = {"seconds": None}
    database_prepare(reuse=args.reuse)
    import django

    django.setup()
    if not args.reuse:
        load = data_load(chats=args.chats, messages=args.messages, deep=args.deep)
    dataset = dataset_describe(args.depth)
    print(
        f"data: {dataset['chats']:,} chats, ~{dataset['messages']:,} messages, deep chat {dataset['deep_messages']:,}"
        + (f", loaded in {load['seconds']:.1f} s" if load["seconds"] else " (reused)")
    )
    with psycopg.connect(DATABASE_URL, autocommit=True) as raw:
        keyset = keyset_sql_time(raw, dataset, args.depth, samples=args.samples, warm_up=args.warm_up)
        pages = pages_time(dataset, args.depth, raw, samples=args.samples, warm_up=args.warm_up)
        if args.explain:
            plans_print(raw, pages, dataset, args.depth)

    deep_name, shallow_name = f"history_depth_{args.depth}", "history_depth_0"
    header = ("page p50", "page p95", "CPU p50", "CPU p95", "SQL p50", "SQL p95", "queries", "ratio")
    print(f"{'measure (ms)':<32}" + "".join(f"{title:>9}" for title in header))
    for name, figures in (pages or {}).items():
        columns = ("p50_ms", "p95_ms", "cpu_p50_ms", "cpu_p95_ms", "sql_p50_ms", "sql_p95_ms")
        print(
            f"{name:<32}"
            + "".join(f"{figures[column]:>9.2f}" for column in columns)
            + f"{figures['queries']:>9}{figures['ratio_p50']:>8}x"
        )
    for name, figures in keyset.items():
        print(f"{'keyset SQL ' + name:<32}{'':>36}{figures['p50_ms']:>9.2f}{figures['p95_ms']:>9.2f}")
    if pages is None:
        print("pages: the inbox views (crm:inbox, crm:chat-detail, crm:chat-messages) are not in this tree")

    result = {
        "benchmark": "inbox",
        "chats": dataset["chats"],
        "messages": dataset["messages"],
        "deep_chat_messages": dataset["deep_messages"],
        "depth": args.depth,
        "samples": args.samples,
        "load_seconds": round(load["seconds"], 1) if load["seconds"] else None,
        "keyset_sql": keyset,
        "keyset_depth_ratio_p95": round(keyset[deep_name]["p95_ms"] / keyset[shallow_name]["p95_ms"], 2),
        "targets": {"page_p95_ms": PAGE_P95_TARGET_MS, "depth_ratio": DEPTH_RATIO_TARGET},
        # The machine is shared: the 1-minute load average at the end says how calm the run was.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if pages is not None:
        result["pages"] = {
            name: {k: v for k, v in figures.items() if k != "_selects"} for name, figures in pages.items()
        }
        depth_ratio = pages[deep_name]["p95_ms"] / pages[shallow_name]["p95_ms"]
        result["page_depth_ratio_p95"] = round(depth_ratio, 2)
        result["met"] = (
            all(figures["p95_ms"] <= PAGE_P95_TARGET_MS for figures in pages.values())
            and depth_ratio <= DEPTH_RATIO_TARGET
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
