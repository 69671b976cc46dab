"""The embedded SQLite store: one file, WAL, shared safely by the processes of one host.

The file is a pair of append-only logs, written in ONE ``BEGIN IMMEDIATE`` transaction per
accepted batch; the exact in-memory seen-set of each process is their index:

* **seen** holds *key blocks*: one row per day of an accepted batch, ``(seq, day, keys)``,
  ``keys`` being the batch's new 16-byte dedup keys of that day, concatenated. ``seq``
  (``AUTOINCREMENT``: never reused) orders the blocks. Appending a block costs one row
  however many keys it holds, where a row per key meant a random B-tree insert per key
  whose cost grows with the day. Pruning a day is a range delete on ``seen_day``.
* **outbox** holds *segments*: the new entries of one batch (up to ``segment_size`` of
  them), their keys, payload sizes and payloads each concatenated, with a bitmap of the
  entries already settled (delivered or dead). An entry's id is ``segment id << 16 |
  index``. Claims lease whole segments (``state`` 1, ``due`` = lease expiry); settling the
  last entry of a segment deletes it.
* **dead** holds dead letters one per row, with their fault code and text.

Exactness across processes: `accept` runs under SQLite's write lock (``BEGIN IMMEDIATE``;
"database is locked" waits for the busy timeout instead of failing). Before deciding, it
reads the key blocks other processes appended since its memory's cursor
(`HotSet.sync`), so the memory holds every key of its days in the file; days before the
memory's window (late accesses) are looked up in the file. A commit that fails is rolled
back and raised as `StoreError`, and memory is only told about keys once committed:
nothing reported as accepted is ever missing.

Entries leased by a process of this host that no longer runs are returned to pending when
the store is opened. The schema is created and migrated with sqlite-utils
(``_meta.schema_version``); the file (and its WAL and shared-memory files) has mode 0600.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from minlog.client import lifecycle as _lifecycle
from minlog.core.keys import HotSet
from minlog.errors import ConfigurationError, StoreError
from minlog.store.base import DeadLetter, OutboxEntry, StoreCounts
from minlog.store.packed import (
    KEY_SIZE,
    SEGMENT_COLUMNS,
    SEGMENT_LIMIT,
    Segment,
    block_keys,
    by_segment,
    entry_id,
    is_set,
    pack,
)
from minlog.store.sqlite_schema import SCHEMA_VERSION, migrate

__all__ = ["SCHEMA_VERSION", "SEGMENT_LIMIT", "SQLiteStore"]

_T = TypeVar("_T")




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
    ``segment_size`` caps the entries of one outbox segment (keep it at most the delivery
    batch size, so that several delivery threads find segments to share).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 30.0,
        segment_size: int = 500,
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ConfigurationError("synchronous must be NORMAL, FULL or EXTRA")
        if not 1 <= segment_size <= SEGMENT_LIMIT:
            raise ConfigurationError(f"segment_size must be between 1 and {SEGMENT_LIMIT}")
        self.path = Path(path)
        self.segment_size = segment_size
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
        with self._tx():
            migrate(sqlite_utils.Database(self._conn), str(self.path))

    def _release_orphans(self) -> None:
        """Return segments leased by processes of this host that are gone to pending."""
        with self._tx() as conn:
            owners = [r[0] for r in conn.execute(
                "SELECT DISTINCT owner FROM outbox WHERE state = 1 AND owner IS NOT NULL")]
            dead = [o for o in owners if not (o.isdigit() and _pid_alive(int(o)))]
            conn.executemany(
                "UPDATE outbox SET state = 0, owner = NULL, due = accepted_at "
                "WHERE state = 1 AND owner = ?", [(o,) for o in dead])

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
        _lifecycle.abandon(self._conn)
        try:
            self._conn = self._connect()
        except sqlite3.Error as e:
            raise StoreError(f"cannot reopen the SQLite store {self.path}: {e}") from e

    # ------------------------------------------------------------------ seen-set

    @staticmethod
    def _top(conn: sqlite3.Connection) -> int:
        """The newest key block's ``seq`` ever (kept by SQLite for AUTOINCREMENT)."""
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'seen'").fetchone()
        return 0 if row is None else int(row[0])

    def load(self, memory: HotSet) -> None:
        def read(conn: sqlite3.Connection) -> tuple[int, list[tuple[int, bytes]]]:
            conn.execute("BEGIN")  # one snapshot: the blocks and the cursor agree
            try:
                top = self._top(conn)
                rows = conn.execute("SELECT day, keys FROM seen WHERE day >= ? AND seq <= ?",
                                    [memory.window().start, top]).fetchall()
            finally:
                conn.execute("COMMIT")
            return top, rows

        top, rows = self._read(read)
        self._take_in(memory, rows, top)

    def _catch_up(self, conn: sqlite3.Connection, memory: HotSet) -> None:
        """Take in the key blocks other processes appended since ``memory.sync``."""
        top = self._top(conn)
        if top == memory.sync:
            return
        since = memory.sync if top > memory.sync else 0  # 0: the file was replaced
        self._take_in(memory, conn.execute(
            "SELECT day, keys FROM seen WHERE seq > ? AND seq <= ?", [since, top]), top)

    @staticmethod
    def _take_in(memory: HotSet, blocks: Iterable[tuple[int, bytes]], top: int) -> None:
        """Put the ``(day, keys)`` blocks up to ``top`` into the days ``memory`` holds."""
        for day, blob in blocks:
            part = memory.partition(day)
            if part is not None:
                part.update(block_keys(blob))
        memory.sync = top

    @staticmethod
    def _day_keys(conn: sqlite3.Connection, day: int) -> set[bytes]:
        keys: set[bytes] = set()
        for (blob,) in conn.execute("SELECT keys FROM seen WHERE day = ?", [day]):
            keys.update(block_keys(blob))
        return keys

    def accept(self, entries: Sequence[tuple[int, bytes, bytes]], now: float,
               memory: HotSet | None = None) -> list[bool]:
        if not entries:
            return []
        result: list[bool] = []
        new: list[tuple[int, bytes, bytes]] = []
        with self._tx() as conn:
            if memory is not None:
                self._catch_up(conn, memory)
            on_disk: dict[int, set[bytes]] = {}  # days memory cannot answer for
            taken: set[tuple[int, bytes]] = set()  # new in this batch
            for entry in entries:
                day, key, _ = entry
                known = None if memory is None else memory.partition(day)
                if known is None:
                    known = on_disk.get(day)
                    if known is None:
                        known = on_disk[day] = self._day_keys(conn, day)
                        if memory is not None:
                            # Complete as of memory's cursor (caught up above): memory
                            # may hold it, and answers the day's repeats from now on.
                            memory.adopt(day, known)
                pair = (day, key)
                if key in known or pair in taken:
                    result.append(False)
                else:
                    taken.add(pair)
                    new.append(entry)
                    result.append(True)
            if new:
                self._append(conn, new, now)
                top = self._top(conn) if memory is not None else 0
        if memory is not None and new:
            for day, key, _ in new:
                part = memory.partition(day)
                if part is not None:
                    part.add(key)
            memory.sync = top  # our own blocks follow the ones taken in above
        return result

    def _append(self, conn: sqlite3.Connection, new: Sequence[tuple[int, bytes, bytes]],
                now: float) -> None:
        by_day: dict[int, list[bytes]] = {}
        for day, key, _ in new:
            by_day.setdefault(day, []).append(key)
        conn.executemany("INSERT INTO seen (day, keys) VALUES (?, ?)",
                         [(day, b"".join(keys)) for day, keys in by_day.items()])
        self._enqueue(conn, [(key, payload) for _, key, payload in new], now, now)

    def _enqueue(self, conn: sqlite3.Connection, entries: Sequence[tuple[bytes, bytes]],
                 due: float, accepted_at: float) -> None:
        """Append ``(key, payload)`` entries to the outbox as pending segments."""
        size = self.segment_size
        conn.executemany(
            "INSERT INTO outbox (n, keys, sizes, payloads, settled, done, state, attempts, "
            "due, accepted_at) VALUES (?, ?, ?, ?, 0, NULL, 0, 0, ?, ?)",
            [(*pack(entries[i : i + size]), due, accepted_at)
             for i in range(0, len(entries), size)])

    def seen(self, day: int) -> set[bytes]:
        return self._read(lambda c: self._day_keys(c, day))

    def prepare(self, today: int) -> None:
        """Nothing to prepare: SQLite's seen-set is one table."""

    def prune(self, before_day: int) -> int:
        """Forget the key blocks of days before ``before_day``; returns the keys removed."""
        with self._tx() as conn:
            (size,) = conn.execute("SELECT COALESCE(SUM(length(keys)), 0) FROM seen "
                                   "WHERE day < ?", [before_day]).fetchone()
            conn.execute("DELETE FROM seen WHERE day < ?", [before_day])
        return int(size) // KEY_SIZE

    # ------------------------------------------------------------------ delivery

    def claim(self, limit: int, lease_seconds: float, now: float) -> list[OutboxEntry]:
        """Lease whole due segments, oldest first, until ``limit`` entries are taken. When
        the last one holds more open entries than there is room for, the entries taken
        move to a new, leased segment (and count as settled in the old one) and the rest
        stay where they were, unchanged: a leased segment holds only entries that were
        handed out, and an entry id never changes meaning."""
        out: list[OutboxEntry] = []
        until = now + lease_seconds
        with self._tx() as conn:
            leased: list[int] = []
            part: tuple[Segment, list[int]] | None = None
            cursor = conn.execute(
                f"SELECT {SEGMENT_COLUMNS} FROM outbox WHERE due <= ? ORDER BY due, id",
                [now])
            try:
                for row in cursor:
                    seg = Segment(row)
                    open_ = list(seg.open())
                    if len(open_) > limit - len(out):
                        part = (seg, open_)
                        break
                    out.extend(OutboxEntry(entry_id(seg.id, i), seg.key(i),
                                           seg.payload(i), seg.attempts + 1) for i in open_)
                    leased.append(seg.id)
                    if len(out) == limit:
                        break
            finally:
                cursor.close()
            conn.executemany(
                "UPDATE outbox SET state = 1, due = ?, owner = ?, attempts = attempts + 1 "
                "WHERE id = ?", [(until, self._owner, i) for i in leased])
            if part is not None:
                seg, open_ = part
                taken = open_[: limit - len(out)]
                new_id = self._insert(conn, [(seg.key(i), seg.payload(i)) for i in taken],
                                      state=1, attempts=seg.attempts + 1, due=until,
                                      accepted_at=seg.accepted_at, owner=self._owner)
                out.extend(OutboxEntry(entry_id(new_id, j), seg.key(i), seg.payload(i),
                                       seg.attempts + 1) for j, i in enumerate(taken))
                # Marked settled where they were: the segment's other entries keep their
                # ids (a lessee whose lease ran out may still ack or bury them by id).
                self._settle(conn, seg.id, taken)
        return out

    def _insert(self, conn: sqlite3.Connection, entries: Sequence[tuple[bytes, bytes]], *,
                state: int, attempts: int, due: float, accepted_at: float,
                owner: str | None) -> int:
        """One segment of ``entries``; returns its id."""
        cursor = conn.execute(
            "INSERT INTO outbox (n, settled, keys, sizes, payloads, done, state, attempts, "
            "due, accepted_at, owner) VALUES (?, 0, ?, ?, ?, NULL, ?, ?, ?, ?, ?)",
            [*pack(entries), state, attempts, due, accepted_at, owner])
        return int(cursor.lastrowid or 0)

    @staticmethod
    def _settle(conn: sqlite3.Connection, segment: int, indexes: Iterable[int]) -> None:
        """Mark entries of ``segment`` settled; delete the segment when all are. Its lease
        stands: the other entries of a leased segment were handed out too and are still
        being delivered."""
        row = conn.execute("SELECT n, settled, done FROM outbox WHERE id = ?",
                           [segment]).fetchone()
        if row is None:
            return
        n, settled, done = row
        bits = bytearray(done) if done is not None else bytearray((n + 7) // 8)
        for i in indexes:
            if 0 <= i < n and not is_set(bits, i):
                bits[i >> 3] |= 1 << (i & 7)
                settled += 1
        if settled >= n:
            conn.execute("DELETE FROM outbox WHERE id = ?", [segment])
        else:
            conn.execute("UPDATE outbox SET done = ?, settled = ? WHERE id = ?",
                         [bytes(bits), settled, segment])

    def ack(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._tx() as conn:
            for segment, indexes in by_segment(ids).items():
                self._settle(conn, segment, indexes)

    def retry(self, ids: Sequence[int], not_before: float) -> None:
        if not ids:
            return
        with self._tx() as conn:
            conn.executemany(
                "UPDATE outbox SET state = 0, due = ?, owner = NULL WHERE id = ?",
                [(not_before, s) for s in by_segment(ids)])

    def bury(self, failures: Sequence[tuple[int, str, str]], now: float) -> None:
        if not failures:
            return
        by_id = {i: (code, text) for i, code, text in failures}
        with self._tx() as conn:
            for segment, indexes in by_segment(by_id).items():
                row = conn.execute(f"SELECT {SEGMENT_COLUMNS} FROM outbox WHERE id = ?",
                                   [segment]).fetchone()
                if row is None:
                    continue
                seg = Segment(row)
                buried = [i for i in indexes if 0 <= i < seg.n and not is_set(seg.done, i)]
                conn.executemany(
                    "INSERT OR REPLACE INTO dead (id, key, payload, attempts, code, text, "
                    "died_at, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(entry_id(segment, i), seg.key(i), seg.payload(i), seg.attempts,
                      *by_id[entry_id(segment, i)], now, seg.accepted_at)
                     for i in buried])
                self._settle(conn, segment, buried)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._read(lambda c: c.execute(
            "SELECT id, key, payload, attempts, code, text, died_at FROM dead "
            "ORDER BY died_at, id LIMIT ?", [limit]).fetchall())
        return [DeadLetter(*r) for r in rows]

    def redrive(self, ids: Sequence[int] | None, now: float) -> int:
        if ids is not None and not ids:
            return 0
        with self._tx() as conn:
            if ids is None:
                rows = conn.execute(
                    "SELECT id, key, payload, accepted_at FROM dead ORDER BY id").fetchall()
            else:
                wanted = sorted(set(ids))
                rows = []
                for start in range(0, len(wanted), 500):
                    some = wanted[start : start + 500]
                    rows += conn.execute(
                        "SELECT id, key, payload, accepted_at FROM dead WHERE id IN "
                        f"({','.join('?' * len(some))}) ORDER BY id", some).fetchall()
            for start in range(0, len(rows), self.segment_size):
                chunk = rows[start : start + self.segment_size]
                oldest = min((r[3] for r in chunk if r[3] is not None), default=now)
                self._enqueue(conn, [(r[1], r[2]) for r in chunk], now, oldest)
            conn.executemany("DELETE FROM dead WHERE id = ?", [(r[0],) for r in rows])
        return len(rows)

    def counts(self) -> StoreCounts:
        def q(c: sqlite3.Connection) -> StoreCounts:
            pending, in_flight, oldest = c.execute(
                "SELECT COALESCE(SUM(CASE WHEN state = 0 THEN n - settled END), 0), "
                "COALESCE(SUM(CASE WHEN state = 1 THEN n - settled END), 0), "
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
        rows = self._read(lambda c: c.execute(
            "SELECT code, sealed FROM aliases WHERE scope = ? ORDER BY code", [scope]
        ).fetchall())
        return [(str(code), bytes(sealed)) for code, sealed in rows]
