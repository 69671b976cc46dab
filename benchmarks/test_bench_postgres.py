"""PostgreSQL: first-of-day accept in batches versus one statement and commit per event.

Both are measured in the same test on fresh schemas; the ratio (goal >= 20x) is printed
and stored in ``extra_info``. Skips without a server unless MINLOG_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from minlog.store import NewEntry

URL = os.environ.get("MINLOG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DAY = 740_000
BATCH = 1_000


def _entries(n: int) -> list[NewEntry]:
    return [NewEntry(DAY, os.urandom(16), os.urandom(300)) for _ in range(n)]


def _batched(n: int) -> float:
    from minlog.store.postgres import PostgresStore

    store = PostgresStore(URL, schema=f"b_{uuid.uuid4().hex[:10]}")
    entries = _entries(n)
    try:
        store.prepare(DAY)
        started = time.perf_counter()
        for i in range(0, n, BATCH):
            store.append(entries[i : i + BATCH], 1.0)
        return time.perf_counter() - started
    finally:
        store.drop_schema()
        store.close()


def _naive(psycopg: Any, n: int) -> float:
    schema = f"n_{uuid.uuid4().hex[:10]}"
    entries = _entries(n)
    with psycopg.connect(URL) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.seen (day int, key bytea, PRIMARY KEY (day, key))")
        conn.execute(f"CREATE TABLE {schema}.outbox (id bigserial PRIMARY KEY, key bytea, "
                     "payload bytea, due float8)")
        conn.commit()
        try:
            started = time.perf_counter()
            for e in entries:
                cur = conn.execute(f"INSERT INTO {schema}.seen VALUES (%s, %s) "
                                   "ON CONFLICT DO NOTHING", [e.day, e.key])
                if cur.rowcount == 1:
                    conn.execute(f"INSERT INTO {schema}.outbox (key, payload, due) "
                                 "VALUES (%s, %s, 1.0)", [e.key, e.payload])
                conn.commit()
            return time.perf_counter() - started
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            conn.commit()


def _best(fn: Callable[[], float], rounds: int) -> float:
    return min(fn() for _ in range(rounds))


def test_postgres_batched_vs_per_event(benchmark: Any, pg: Any, save_figures: Callable[
        [str, dict[str, Any]], None]) -> None:
    """Batched first-of-day accept against one statement and commit per event."""
    full = not getattr(benchmark, "disabled", True)
    n = 20_000 if full else 1_000
    rounds = 3 if full else 1
    naive = _best(lambda: _naive(pg, n), rounds)
    batched = benchmark.pedantic(lambda: _batched(n), rounds=rounds, iterations=1)
    batched = _best(lambda: _batched(n), rounds) if batched is None else batched
    ratio = naive / batched
    benchmark.extra_info.update({"events": n, "naive_events_per_s": n / naive,
                                 "batched_events_per_s": n / batched, "ratio": ratio})
    line = (f"\nPostgreSQL first-of-day accept, {n:,} events: batched {n / batched:,.0f}/s, "
            f"per event {n / naive:,.0f}/s, ratio {ratio:.1f}x (goal >= 20x)")
    print(line)
    save_figures("postgres", benchmark.extra_info)
