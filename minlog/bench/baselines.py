"""What `minlog bench` (and ``benchmarks/``) compare the library against, in the same run.

* The **naive logger**: what a vendor writes by hand. A SQLite file in WAL mode with the
  ``synchronous`` of the run's durability (``NORMAL`` for ``"process"``, ``FULL`` for
  ``"power"``: the same as minlog's stores); per event one ``INSERT OR IGNORE`` into a
  ``seen(employee, citizen, day)`` table, when new an outbox row with a JSON payload, and
  a commit. Same durability as ``record`` (committed when the call returns, synced
  alike), no sealing, no identity policy: the comparison does not flatter minlog.
* A **bare commit**: one one-row ``INSERT`` and its ``COMMIT`` on the kind of store the
  vendor named (a SQLite file with the same settings as minlog's, or a PostgreSQL table
  with the same ``synchronous_commit``): the floor under any durable per-event path on
  that store.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from minlog.core.clock import SYSTEM_CLOCK, Clock
from minlog.core.days import COPENHAGEN
from minlog.core.model import Access

__all__ = ["BareCommit", "naive_open", "naive_record", "naive_run"]

NAIVE_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    employee TEXT NOT NULL, citizen TEXT NOT NULL, day TEXT NOT NULL,
    PRIMARY KEY (employee, citizen, day)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, payload TEXT NOT NULL, created REAL NOT NULL
);
"""


def naive_open(path: str | os.PathLike[str], synchronous: str = "NORMAL"
               ) -> sqlite3.Connection:
    """What a vendor writes by hand: WAL, and ``synchronous`` (``NORMAL``: a commit
    survives a crash of the process; ``FULL``: a power loss too)."""
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.executescript(NAIVE_SCHEMA)
    return conn


def naive_record(conn: sqlite3.Connection, access: Access, system_name: str,
                 clock: Clock = SYSTEM_CLOCK) -> bool:
    """One event: INSERT OR IGNORE into the seen table, an outbox row when new, a commit."""
    e, o = access.employee, access.organisation
    day = access.at.astimezone(COPENHAGEN).date().isoformat()
    with conn:  # BEGIN (implicit) ... COMMIT
        new = conn.execute("INSERT OR IGNORE INTO seen (employee, citizen, day) VALUES (?, ?, ?)",
                           (e.id, access.citizen, day)).rowcount == 1
        if new:
            payload = json.dumps({
                "system_name": system_name, "activity": access.activity,
                "person_identifier": access.citizen, "user_person_identifier": e.id,
                "date_time": access.at.astimezone(dt.UTC).isoformat(),
                "person_identifier_source": access.citizen_source,
                "user_person_identifier_source": e.source,
                "organisation_id": o.id, "organisation_id_source": o.source,
                "organisation_name": o.name, "user_person_name": e.name, "user_role": e.role,
            }, ensure_ascii=False)
            conn.execute("INSERT INTO outbox (payload, created) VALUES (?, ?)",
                         (payload, clock.time()))
    return new


def naive_run(conn: sqlite3.Connection, events: Sequence[Access],
              system_name: str = "Bench EOJ", clock: Clock = SYSTEM_CLOCK) -> int:
    """Record ``events`` one per call; returns how many were new."""
    new = 0
    for access in events:
        new += naive_record(conn, access, system_name, clock)
    return new


_PAYLOAD = b"x" * 300  # about an outbox entry's sealed size


class BareCommit:
    """One-row ``INSERT`` + ``COMMIT`` on a fresh table: `commit` does one and returns its
    nanoseconds. ``open_sqlite(path, synchronous)`` or ``open_postgres(url, schema,
    synchronous_commit)``;
    `close` drops the PostgreSQL schema (the SQLite file is the caller's)."""

    def __init__(self, do: Callable[[], None], close: Callable[[], None]) -> None:
        self._do = do
        self._close = close

    def commit(self) -> int:
        started = time.perf_counter_ns()
        self._do()
        return time.perf_counter_ns() - started

    def close(self) -> None:
        self._close()

    @classmethod
    def open_sqlite(cls, path: str | os.PathLike[str], synchronous: str = "NORMAL"
                    ) -> BareCommit:
        conn = sqlite3.connect(Path(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        execute = conn.execute

        def do() -> None:
            execute("BEGIN IMMEDIATE")
            execute("INSERT INTO t (payload) VALUES (?)", (_PAYLOAD,))
            execute("COMMIT")

        return cls(do, conn.close)

    @classmethod
    def open_postgres(cls, url: str, schema: str, synchronous_commit: str = "on"
                      ) -> BareCommit:
        import psycopg

        conn: psycopg.Connection[Any] = psycopg.connect(
            url, autocommit=True, options=f"-c synchronous_commit={synchronous_commit}")
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".t (id bigserial PRIMARY KEY, payload bytea)')
        statement = f'INSERT INTO "{schema}".t (payload) VALUES (%s)'
        execute = conn.execute

        def do() -> None:  # autocommit: the INSERT is its own transaction
            execute(statement, (_PAYLOAD,))

        def close() -> None:
            try:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                conn.close()

        return cls(do, close)
