"""The embedded SQLite store: one file, WAL, shared safely by the processes of one host.

Exactness across processes comes from SQLite itself: `append` runs in one
``BEGIN IMMEDIATE`` transaction (SQLite's write lock: "database is locked" waits for the
busy timeout instead of failing), and the seen-set's primary key ``(day, key)`` admits each
pair once (`minlog.store.sqlite_seen`). A pair that was already there is answered "not
new"; nothing else is consulted. A commit that fails is rolled back and raised as
`StoreError`: nothing reported as accepted is ever missing.

The outbox is one row per entry (see `minlog.store.sqlite_schema`). A claim leases due
rows under a fresh token (`minlog.store.owners`); only the holder of an entry's current
lease settles it, so a worker whose lease ran out cannot settle what another worker has
since claimed, and a reused row id can never be settled by mistake. Entries leased by an
owner that is gone (a process of this host that no longer runs, a closed instance of this
process) are returned to pending when the store is opened, and by claims every few
seconds: a killed sender's batch does not wait for its lease to run out.

The WAL is kept small: SQLite cuts it back to `WAL_LIMIT` whenever it starts it over,
and claims (delivery rounds, off the recording path) truncate it to nothing every
`CHECKPOINT_EVERY` seconds, so a WAL grown by a burst gives its space back.

The file (and its WAL and shared-memory files) has mode 0600; the schema is created and
migrated with sqlite-utils (`minlog.store.sqlite_schema`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import sqlite_utils

from minlog import forking
from minlog.delivery.policy import RateLimit
from minlog.delivery.schedule import DeliverySchedule, unscheduled
from minlog.errors import StoreError
from minlog.store import owners, sqlite_seen, sqlite_turns
from minlog.store.base import (
    DEFAULT_DURABILITY,
    SQLITE_SYNCHRONOUS,
    DeadLetter,
    Durability,
    Lease,
    NewEntry,
    OutboxEntry,
    StoreCounts,
)
from minlog.store.base import durability as _durability
from minlog.store.sqlite_schema import (
    SCHEMA_VERSION,
    StoreLayout,
    check,
    check_version,
    describe,
    migrate,
    version,
)

__all__ = ["CHECKPOINT_EVERY", "SCHEMA_VERSION", "WAL_LIMIT", "SQLiteStore"]

_T = TypeVar("_T")

#: The size the WAL file is cut back to whenever SQLite starts it over (bytes).
WAL_LIMIT: Final = 4 * 2**20
#: How often (seconds of the callers' clock) claims truncate the WAL to nothing.
CHECKPOINT_EVERY: Final = 60.0


class _Transaction:
    """The context of `SQLiteStore._tx` (a class: cheaper than a generator on the
    recording path). Holds the fork gate (`minlog.forking.passage`) and the store's lock
    from enter to exit."""

    __slots__ = ("_conn", "_gate", "_lock")

    def __init__(self, store: SQLiteStore) -> None:
        self._gate = forking.passage()
        self._gate.__enter__()
        self._lock = store._lock
        self._lock.acquire()
        if store._closed:
            self._release()
            raise StoreError("the store is closed")
        self._conn = store._conn

    def _release(self) -> None:
        self._lock.release()
        self._gate.__exit__(None, None, None)

    def __enter__(self) -> sqlite3.Connection:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException as e:
            self._release()
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"cannot start a transaction: {e}") from e
            raise
        return self._conn

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if error is None:
                try:
                    self._conn.execute("COMMIT")
                    return
                except sqlite3.Error as e:
                    error = e
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise StoreError(f"SQLite store: {error}") from error
        finally:
            self._release()


class SQLiteStore:
    """The `Store` on one SQLite file. Thread-safe; one instance per process.

    ``durability`` (`minlog.store.base.Durability`): ``"power"`` (default) syncs the WAL
    at each commit (``synchronous=FULL``): a commit survives a power loss; ``"process"``
    (``synchronous=NORMAL``) survives a crash of the process, not a power loss, and costs
    no sync per commit.
    ``create=False`` refuses a file that does not exist or holds no minlog store (for
    operators' tools); ``read_only=True`` (which implies it) opens the file read-only: it
    is neither migrated nor changed (for tools that inspect).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = DEFAULT_DURABILITY,
        busy_timeout: float = 30.0,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        self.durability = _durability(durability)
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._owner = owners.Owner()
        self._checkpointed_at = float("-inf")
        self._closed = False
        self._busy_timeout = busy_timeout
        self._synchronous = SQLITE_SYNCHRONOUS[self.durability]
        create = create and not read_only
        if not create and not self.path.is_file():
            raise StoreError(f"there is no SQLite store at {self.path} (check the path)")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                for suffix in ("", "-wal", "-shm"):
                    fd = os.open(f"{self.path}{suffix}", os.O_CREAT | os.O_RDWR, 0o600)
                    os.close(fd)
                    os.chmod(f"{self.path}{suffix}", 0o600)
            self._conn = self._connect()
            if read_only:
                self._read(self._check_read_only)
                return
            if not create and not self._read(lambda c: version(sqlite_utils.Database(c))):
                raise StoreError(f"{self.path} holds no minlog store (check the path)")
            self._read(lambda c: c.execute("PRAGMA journal_mode = WAL"))
            with self._tx() as conn:
                migrate(sqlite_utils.Database(conn), str(self.path))
            with self._tx() as conn:
                self._reap(conn)
        except (sqlite3.Error, OSError) as e:
            self.close()  # a file this minlog refuses leaves no connection behind
            raise StoreError(f"cannot open the SQLite store {self.path}: {e}") from e
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ plumbing

    def _check_read_only(self, conn: sqlite3.Connection) -> None:
        """A file opened read-only is not migrated: it must be this version's already."""
        db = sqlite_utils.Database(conn)
        check_version(db, str(self.path))
        check(db, str(self.path))

    def _tx(self) -> _Transaction:
        """One ``BEGIN IMMEDIATE`` transaction (``with self._tx() as conn``); any error
        rolls back and becomes `StoreError`."""
        return _Transaction(self)

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with forking.passage(), self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            try:
                return fn(self._conn)
            except sqlite3.Error as e:
                raise StoreError(f"SQLite store: {e}") from e

    def _connect(self) -> sqlite3.Connection:
        with forking.passage():
            if self.read_only:
                conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True,
                                       timeout=self._busy_timeout, isolation_level=None,
                                       check_same_thread=False)
            else:
                conn = sqlite3.connect(self.path, timeout=self._busy_timeout,
                                       isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            if not self.read_only:  # (the file's journal mode is WAL: set when opened)
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
                conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
            return conn

    def _reap(self, conn: sqlite3.Connection, *, mine: bool = False) -> int:
        """Return entries leased by owners that are gone (`minlog.store.owners`), or by
        this instance (``mine``), to pending, due at once (oldest first). The distinct
        owners of leased entries come from a partial index; one check per owner, not per
        entry."""
        tokens = self._owners_of_leases(conn)
        prefix = self._owner.prefix
        return sum(conn.execute("UPDATE outbox SET state = 0, owner = NULL, due = accepted_at "
                                "WHERE state = 1 AND owner = ?", [token]).rowcount
                   for token in ([t for t in tokens if t.startswith(prefix)] if mine
                                 else owners.gone(tokens)))

    @staticmethod
    def _owners_of_leases(conn: sqlite3.Connection) -> list[str]:
        """The distinct owners of leased entries (from a partial index)."""
        return [str(r[0]) for r in conn.execute(
            "SELECT DISTINCT owner FROM outbox WHERE state = 1 AND owner IS NOT NULL")]

    def _checkpoint(self, now: float) -> None:
        """Every `CHECKPOINT_EVERY` seconds (of ``now``): copy the WAL into the database
        and truncate it to nothing (``wal_checkpoint(TRUNCATE)``), so that a WAL grown by
        a burst gives its space back. Off the recording path (delivery rounds run it);
        it waits for other writers at most briefly, and otherwise does what it can."""
        if self.read_only or self._checkpointed_at <= now < (
                self._checkpointed_at + CHECKPOINT_EVERY):
            return
        self._checkpointed_at = now

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA busy_timeout = 100")
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")

        self._read(run)

    def after_fork(self) -> None:
        """In a forked child: abandon the parent's connection (SQLite connections must not
        cross a fork; closing it here could disturb the parent) and open a fresh one."""
        self._lock = threading.RLock()
        self._owner.renew()
        forking.abandon(self._conn)
        try:
            self._conn = self._connect()
        except sqlite3.Error as e:
            raise StoreError(f"cannot reopen the SQLite store {self.path}: {e}") from e

    # ------------------------------------------------------------------ seen-set + outbox

    def append(self, entries: Sequence[NewEntry], now: float) -> list[bool]:
        if not entries:
            return []
        with self._tx() as conn:
            return sqlite_seen.append(conn, entries, now)

    def keys_of(self, day: int) -> set[bytes]:
        return self._read(lambda c: {bytes(r[0]) for r in c.execute(
            "SELECT key FROM seen WHERE day = ?", [day])})

    @staticmethod
    def _setting(conn: sqlite3.Connection, name: str) -> Any:
        """A row of ``_meta`` (an int or a text), or None."""
        row = conn.execute("SELECT value FROM _meta WHERE name = ?", [name]).fetchone()
        return None if row is None else row[0]

    def horizon_days(self, at_least: int) -> int:
        current = self._read(lambda c: self._setting(c, "horizon_days"))
        if self.read_only or (current is not None and int(current) >= at_least):
            return 0 if current is None else int(current)
        with self._tx() as conn:
            row = self._setting(conn, "horizon_days")
            now = 0 if row is None else int(row)
            if at_least > now:
                conn.execute("INSERT OR REPLACE INTO _meta (name, value) "
                             "VALUES ('horizon_days', ?)", [at_least])
                now = at_least
        return now

    def key_fingerprint(self, record: bytes | None = None, *,
                        replace: bool = False) -> bytes | None:
        def recorded(conn: sqlite3.Connection) -> bytes | None:
            value = self._setting(conn, "key_fingerprint")
            return None if value is None else bytes.fromhex(str(value))

        if record is None or self.read_only:
            return self._read(recorded)
        with self._tx() as conn:
            current = recorded(conn)
            if current is None or (replace and current != record):
                conn.execute("INSERT OR REPLACE INTO _meta (name, value) "
                             "VALUES ('key_fingerprint', ?)", [record.hex()])
                current = record
        return current

    def holds_data(self) -> bool:
        return bool(self._read(lambda c: c.execute(
            "SELECT EXISTS (SELECT 1 FROM seen) OR EXISTS (SELECT 1 FROM outbox) "
            "OR EXISTS (SELECT 1 FROM dead) OR EXISTS (SELECT 1 FROM aliases)").fetchone()[0]))

    def prepare(self, today: int) -> None:
        """Nothing to prepare: SQLite's seen-set is one table."""

    def prune(self, before_day: int) -> int:
        with self._tx() as conn:
            return conn.execute("DELETE FROM seen WHERE day < ?", [before_day]).rowcount

    # ------------------------------------------------------------------ delivery

    def claim(self, limit: int, lease_seconds: float, now: float, *,
              schedule: DeliverySchedule | None = None, fill: bool = True) -> Lease:
        token = self._owner.token()
        until = now + lease_seconds
        plan = schedule or unscheduled(limit)
        # Leases of owners gone are taken back in the claim's transaction; whether there
        # are any, and whether there is anything to send, is first asked by a read, so
        # that a claim finding nothing takes no write lock.
        reap = self._owner.reap_due(now) and bool(
            owners.gone(self._read(self._owners_of_leases)))
        if not reap:
            found = self._read(lambda c: sqlite_turns.peek(c, plan, now=now, fill=fill))
            if found is not None:
                self._checkpoint(now)
                return Lease(token, (), until, *found)
        with self._tx() as conn:
            if reap:
                self._reap(conn)
            rows, next_at, held = sqlite_turns.claim_rows(
                conn, plan, limit=limit, token=token, until=until, now=now, fill=fill)
        self._checkpoint(now)
        rows.sort(key=lambda r: r[0])
        return Lease(token, tuple(OutboxEntry(r[0], bytes(r[1]), bytes(r[2]), r[3], r[4])
                                  for r in rows), until, next_at, held)

    def reserve_send(self, tenant: str, limit: RateLimit | None, now: float) -> float:
        if limit is None:
            return 0.0
        with self._tx() as conn:
            return sqlite_turns.reserve_send(conn, tenant, limit, now)

    def release_leases(self) -> int:
        with self._tx() as conn:
            return self._reap(conn, mine=True)

    def ack(self, lease: str, ids: Sequence[int]) -> None:
        if ids:
            with self._tx() as conn:
                sqlite_turns.ack(conn, lease, ids)

    def retry(self, lease: str, ids: Sequence[int], not_before: float) -> None:
        if ids:
            with self._tx() as conn:
                conn.executemany(
                    "UPDATE outbox SET state = 0, due = ?, owner = NULL "
                    "WHERE id = ? AND owner = ?", [(not_before, i, lease) for i in ids])

    def bury(self, lease: str, failures: Sequence[tuple[int, str, str]], now: float) -> None:
        if not failures:
            return
        with self._tx() as conn:
            conn.executemany(
                "INSERT INTO dead (key, payload, attempts, code, text, died_at, accepted_at, "
                "tenant) SELECT key, payload, attempts, ?, ?, ?, accepted_at, tenant "
                "FROM outbox WHERE id = ? AND owner = ?",
                [(code, text, now, i, lease) for i, code, text in failures])
            conn.executemany("DELETE FROM outbox WHERE id = ? AND owner = ?",
                             [(i, lease) for i, _, _ in failures])

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._read(lambda c: list(sqlite_utils.Database(c).table("dead").rows_where(
            select="id, key, payload, attempts, code, text, died_at, tenant",
            order_by="died_at, id", limit=limit)))
        return [DeadLetter(r["id"], bytes(r["key"]), bytes(r["payload"]), r["attempts"],
                           r["code"], r["text"], r["died_at"], r["tenant"]) for r in rows]

    def describe(self) -> StoreLayout:
        """What the file holds: schema version, tables with row counts and columns, SQLite
        settings (for inspecting commands; reads only)."""
        return self._read(lambda c: describe(sqlite_utils.Database(c)))

    def redrive(self, ids: Sequence[int] | None, now: float) -> int:
        if ids is not None and not ids:
            return 0
        moved = 0
        with self._tx() as conn:
            wanted: list[int] = ([r[0] for r in conn.execute("SELECT id FROM dead ORDER BY id")]
                                 if ids is None else sorted(set(ids)))
            for i in wanted:
                cursor = conn.execute(
                    "INSERT INTO outbox (key, payload, tenant, state, attempts, due, accepted_at) "
                    "SELECT key, payload, tenant, 0, 0, ?, COALESCE(accepted_at, ?) FROM dead "
                    "WHERE id = ?", [now, now, i])
                if cursor.rowcount:
                    conn.execute("DELETE FROM dead WHERE id = ?", [i])
                    moved += 1
        return moved

    def counts(self) -> StoreCounts:
        def q(c: sqlite3.Connection) -> StoreCounts:
            pending, in_flight, oldest = c.execute(
                "SELECT COALESCE(SUM(state = 0), 0), COALESCE(SUM(state = 1), 0), "
                "MIN(accepted_at) FROM outbox").fetchone()
            (dead,) = c.execute("SELECT COUNT(*) FROM dead").fetchone()
            return StoreCounts(pending, in_flight, dead, oldest, sqlite_turns.delivered(c))

        return self._read(q)

    def tenant_counts(self) -> dict[str, StoreCounts]:
        return self._read(sqlite_turns.tenant_counts)

    def next_due(self) -> float | None:
        row = self._read(lambda c: c.execute("SELECT MIN(due) FROM outbox").fetchone())
        return None if row[0] is None else float(row[0])

    def accepted_counts(self, bucket: int) -> dict[str, dict[int, int]]:
        if bucket < 1:
            raise ValueError("bucket must be at least 1 second")
        return self._read(lambda c: sqlite_turns.accepted_counts(c, bucket))

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
        with forking.passage(), self._lock:
            if not self._closed:
                self._closed = True
                self._owner.close()
                conn: sqlite3.Connection | None = getattr(self, "_conn", None)
                if conn is not None:  # None when opening failed before it connected
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()

    # ------------------------------------------------------------------ aliases (identity)

    def highest_alias_number(self, scope: str, stem: str) -> int:
        """The highest ``n`` for which ``stem + str(n)`` is a code in ``scope`` (the bare
        ``stem`` counts as 1; 0 for none). One indexed range read of the codes that start
        with ``stem`` (the primary key is ``(scope, code)``, compared as UTF-8 bytes)."""
        row = self._read(lambda c: c.execute(
            "SELECT max(CASE WHEN code = ?2 THEN 1 ELSE CAST(substr(code, ?3) AS INTEGER) END)"
            " FROM aliases WHERE scope = ?1 AND code >= ?2 AND code < ?4"
            " AND (code = ?2 OR (length(code) >= ?3 AND substr(code, ?3) NOT GLOB '*[^0-9]*'))",
            [scope, stem, len(stem) + 1, stem + "\U0010ffff"]).fetchone())
        return 0 if row is None or row[0] is None else int(row[0])

    def list_aliases(self, scope: str) -> list[tuple[str, bytes]]:
        """Every ``(code, sealed)`` registered in ``scope``, in code order (an operator's
        listing; one indexed range read)."""
        rows = self._read(lambda c: list(sqlite_utils.Database(c).table("aliases").rows_where(
            "scope = ?", [scope], select="code, sealed", order_by="code")))
        return [(str(r["code"]), bytes(r["sealed"])) for r in rows]
