"""The embedded SQLite store: one file, WAL, shared safely by the processes of one host.

* The seen-set is ``seen(day, key)``, a ``WITHOUT ROWID`` table whose primary key starts with
  the day, so a day's keys are contiguous and pruning a day is a range delete.
* `accept` writes the seen-set and the outbox in ONE ``BEGIN IMMEDIATE`` transaction on the
  raw connection with ``executemany``; the write lock is taken up front, so the newness it
  reports cannot race another process, and "database is locked" waits (busy timeout)
  instead of failing. A commit that fails is rolled back and raised as `StoreError`:
  nothing reported as accepted is ever missing.
* Outbox entries are *pending* (``state=0``) or *in flight* (``state=1``, leased by one
  process until ``due``). ``due`` is the time an entry may next be claimed: the retry time
  of a pending entry, the lease expiry of an in-flight one. Entries leased by a process of
  this host that no longer runs are returned to pending when the store is opened.
* The schema is created and migrated with sqlite-utils (``_meta.schema_version``).
* The file (and its WAL and shared-memory files) is created with mode 0600.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import sqlite_utils

from .._errors import ConfigurationError, StoreError
from ._base import DeadLetter, OutboxEntry, Pending, StoreCounts

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION: Final = 1
_CHUNK: Final = 400  # rows per IN (...) probe; far below any SQLite variable limit
_T = TypeVar("_T")


def _migrate_1(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS seen (day INTEGER NOT NULL, key BLOB NOT NULL, "
        "PRIMARY KEY (day, key)) WITHOUT ROWID"
    )
    db.table("outbox").create(
        {"id": int, "key": bytes, "payload": bytes, "state": int, "attempts": int,
         "due": float, "accepted_at": float, "owner": str},
        pk="id", not_null={"key", "payload", "state", "attempts", "due", "accepted_at"},
        if_not_exists=True,
    )
    db.table("outbox").create_index(["due", "id"], index_name="outbox_due", if_not_exists=True)
    db.table("dead").create(
        {"id": int, "key": bytes, "payload": bytes, "attempts": int, "code": str,
         "text": str, "died_at": float, "accepted_at": float},
        pk="id", not_null={"key", "payload", "attempts", "code", "text", "died_at"},
        if_not_exists=True,
    )
    db.table("aliases").create(
        {"scope": str, "code": str, "subject": bytes, "sealed": bytes},
        pk=("scope", "code"), not_null={"subject", "sealed"}, if_not_exists=True,
    )
    db.table("aliases").create_index(
        ["scope", "subject"], index_name="aliases_subject", unique=True, if_not_exists=True
    )


_MIGRATIONS: Final[dict[int, Callable[[sqlite_utils.Database], None]]] = {1: _migrate_1}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SQLiteStore:
    """The `Store` on one SQLite file. Thread-safe; one instance per process.

    ``synchronous`` is SQLite's setting: ``"NORMAL"`` (default) survives a crash of the
    process (kill -9); ``"FULL"`` also survives a power loss, at a cost per commit.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 30.0,
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ConfigurationError("synchronous must be NORMAL, FULL or EXTRA")
        self.path = Path(path)
        self._lock = threading.RLock()
        self._owner = f"{os.getpid()}"
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("", "-wal", "-shm"):
                fd = os.open(f"{self.path}{suffix}", os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
                os.chmod(f"{self.path}{suffix}", 0o600)
            self._busy_timeout = busy_timeout
            self._synchronous = synchronous.upper()
            self._conn = self._connect()
            self._migrate()
            self._release_orphans()
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open the SQLite store {self.path}: {e}") from e

    # ------------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; any error rolls back and becomes `StoreError`."""
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise StoreError(f"cannot start a transaction: {e}") from e
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as e:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise StoreError(f"SQLite store: {e}") from e
                raise

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            try:
                return fn(self._conn)
            except sqlite3.Error as e:
                raise StoreError(f"SQLite store: {e}") from e

    def _migrate(self) -> None:
        db = sqlite_utils.Database(self._conn)
        with self._tx():
            db.execute("CREATE TABLE IF NOT EXISTS _meta (name TEXT PRIMARY KEY, value INTEGER)")
            row = db.execute("SELECT value FROM _meta WHERE name = 'schema_version'").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{self.path} has schema version {current}; this minlog knows up to "
                    f"{SCHEMA_VERSION}: upgrade minlog"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                _MIGRATIONS[version](db)
            db.execute(
                "INSERT OR REPLACE INTO _meta (name, value) VALUES ('schema_version', ?)",
                [SCHEMA_VERSION],
            )

    def _release_orphans(self) -> None:
        """Return entries leased by processes of this host that are gone to pending."""
        with self._tx() as conn:
            owners = [r[0] for r in conn.execute(
                "SELECT DISTINCT owner FROM outbox WHERE state = 1 AND owner IS NOT NULL")]
            dead = [o for o in owners if not (o.isdigit() and _pid_alive(int(o)))]
            conn.executemany(
                "UPDATE outbox SET state = 0, owner = NULL WHERE state = 1 AND owner = ?",
                [(o,) for o in dead],
            )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    def after_fork(self) -> None:
        """In a forked child: abandon the parent's connection (SQLite connections must not
        cross a fork; closing it here could disturb the parent) and open a fresh one."""
        self._lock = threading.RLock()
        self._owner = f"{os.getpid()}"
        try:
            self._conn = self._connect()
        except sqlite3.Error as e:
            raise StoreError(f"cannot reopen the SQLite store {self.path}: {e}") from e

    # ------------------------------------------------------------------ seen-set + outbox

    def accept(self, entries: Sequence[Pending], now: float) -> list[bool]:
        if not entries:
            return []
        with self._tx() as conn:
            # Optimistic path: the caller's memory already filtered duplicates, so usually
            # every entry is new. Insert them all; if SQLite ignored none, done. Otherwise
            # roll back to the savepoint and find out, entry by entry, which were known.
            pairs = [(e.day, e.key) for e in entries]
            if len(pairs) == 1:
                if conn.execute("INSERT OR IGNORE INTO seen (day, key) VALUES (?, ?)",
                                pairs[0]).rowcount == 1:
                    self._enqueue(conn, entries, now)
                    return [True]
                return [False]
            if len(set(pairs)) == len(pairs):
                conn.execute("SAVEPOINT optimistic")
                before = conn.total_changes
                conn.executemany("INSERT OR IGNORE INTO seen (day, key) VALUES (?, ?)", pairs)
                if conn.total_changes - before == len(pairs):
                    conn.execute("RELEASE optimistic")
                    self._enqueue(conn, entries, now)
                    return [True] * len(entries)
                conn.execute("ROLLBACK TO optimistic")
                conn.execute("RELEASE optimistic")
            known = self._known(conn, entries)
            result: list[bool] = []
            new: list[Pending] = []
            for e in entries:
                pair = (e.day, e.key)
                if pair in known:
                    result.append(False)
                else:
                    known.add(pair)
                    new.append(e)
                    result.append(True)
            if new:
                conn.executemany("INSERT INTO seen (day, key) VALUES (?, ?)",
                                 [(e.day, e.key) for e in new])
                self._enqueue(conn, new, now)
            return result

    @staticmethod
    def _known(conn: sqlite3.Connection, entries: Sequence[Pending]) -> set[tuple[int, bytes]]:
        by_day: dict[int, list[bytes]] = {}
        for e in entries:
            by_day.setdefault(e.day, []).append(e.key)
        known: set[tuple[int, bytes]] = set()
        for day, keys in by_day.items():
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                known.update(
                    (day, k)
                    for (k,) in conn.execute(
                        f"SELECT key FROM seen WHERE day = ? AND key IN ({marks})", [day, *chunk]
                    )
                )
        return known

    @staticmethod
    def _enqueue(conn: sqlite3.Connection, entries: Sequence[Pending], now: float) -> None:
        conn.executemany(
            "INSERT INTO outbox (key, payload, state, attempts, due, accepted_at) "
            "VALUES (?, ?, 0, 0, ?, ?)",
            [(e.key, e.payload, now, now) for e in entries],
        )

    def seen(self, day: int) -> set[bytes]:
        return self._read(
            lambda c: {k for (k,) in c.execute("SELECT key FROM seen WHERE day = ?", [day])}
        )

    def prepare(self, today: int) -> None:
        """Nothing to prepare: SQLite's seen-set is one table."""

    def prune(self, before_day: int) -> int:
        with self._tx() as conn:
            return conn.execute("DELETE FROM seen WHERE day < ?", [before_day]).rowcount

    # ------------------------------------------------------------------ delivery

    def claim(self, limit: int, lease_seconds: float, now: float) -> list[OutboxEntry]:
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT id, key, payload, attempts FROM outbox WHERE due <= ? "
                "ORDER BY due, id LIMIT ?",
                [now, limit],
            ).fetchall()
            conn.executemany(
                "UPDATE outbox SET state = 1, due = ?, owner = ?, attempts = attempts + 1 "
                "WHERE id = ?",
                [(now + lease_seconds, self._owner, r[0]) for r in rows],
            )
        return [OutboxEntry(id=r[0], key=r[1], payload=r[2], attempts=r[3] + 1) for r in rows]

    def ack(self, ids: Sequence[int]) -> None:
        with self._tx() as conn:
            conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def retry(self, ids: Sequence[int], not_before: float) -> None:
        with self._tx() as conn:
            conn.executemany(
                "UPDATE outbox SET state = 0, due = ?, owner = NULL WHERE id = ?",
                [(not_before, i) for i in ids],
            )

    def bury(self, failures: Sequence[tuple[int, str, str]], now: float) -> None:
        with self._tx() as conn:
            for entry_id, code, text in failures:
                moved = conn.execute(
                    "INSERT INTO dead (id, key, payload, attempts, code, text, died_at, "
                    "accepted_at) SELECT id, key, payload, attempts, ?, ?, ?, accepted_at "
                    "FROM outbox WHERE id = ?",
                    [code, text, now, entry_id],
                ).rowcount
                if moved:
                    conn.execute("DELETE FROM outbox WHERE id = ?", [entry_id])

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._read(lambda c: c.execute(
            "SELECT id, key, payload, attempts, code, text, died_at FROM dead "
            "ORDER BY died_at, id LIMIT ?", [limit]).fetchall())
        return [DeadLetter(*r) for r in rows]

    def redrive(self, ids: Sequence[int] | None, now: float) -> int:
        with self._tx() as conn:
            where, params = ("", []) if ids is None else (
                f"WHERE id IN ({','.join('?' * len(ids))})", list(ids))
            if ids is not None and not ids:
                return 0
            conn.execute(
                "INSERT INTO outbox (id, key, payload, state, attempts, due, accepted_at) "
                f"SELECT id, key, payload, 0, 0, ?, COALESCE(accepted_at, ?) FROM dead {where}",
                [now, now, *params],
            )
            return conn.execute(f"DELETE FROM dead {where}", params).rowcount

    def counts(self) -> StoreCounts:
        def q(c: sqlite3.Connection) -> StoreCounts:
            pending, in_flight, oldest = c.execute(
                "SELECT COALESCE(SUM(state = 0), 0), COALESCE(SUM(state = 1), 0), "
                "MIN(accepted_at) FROM outbox").fetchone()
            (dead,) = c.execute("SELECT COUNT(*) FROM dead").fetchone()
            return StoreCounts(pending, in_flight, dead, oldest)

        return self._read(q)

    def next_due(self) -> float | None:
        row: Any = self._read(lambda c: c.execute("SELECT MIN(due) FROM outbox").fetchone())
        return None if row[0] is None else float(row[0])

    # ------------------------------------------------------------------ aliases

    def alias_for(self, scope: str, subject: bytes) -> str | None:
        row = self._read(lambda c: c.execute(
            "SELECT code FROM aliases WHERE scope = ? AND subject = ?", [scope, subject]
        ).fetchone())
        return None if row is None else str(row[0])

    def add_alias(self, scope: str, code: str, subject: bytes, sealed: bytes) -> bool:
        with self._tx() as conn:
            return conn.execute(
                "INSERT OR IGNORE INTO aliases (scope, code, subject, sealed) VALUES (?, ?, ?, ?)",
                [scope, code, subject, sealed],
            ).rowcount == 1

    def resolve_alias(self, scope: str, code: str) -> bytes | None:
        row = self._read(lambda c: c.execute(
            "SELECT sealed FROM aliases WHERE scope = ? AND code = ?", [scope, code]
        ).fetchone())
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
