"""The PostgreSQL store: one exact dedup and one outbox for every process on every host.

Install with ``pip install 'minlog[postgres]'`` (psycopg 3 and its pool).

* The seen-set ``seen(day, key)`` is partitioned by day (`minlog.store.postgres_schema`).
  Partitions are created ahead of time, and on demand for a day that has none (a late
  access is never dropped); old days are detached (writers are not blocked) and dropped.
* `append` is ONE statement and one round trip per batch: arrays are ``unnest``-ed,
  ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` decides newness, and the outbox rows of
  the new keys are inserted by the same statement (one transaction).
* `claim` leases the due entries of one tenant (`minlog.delivery.schedule`: ready to
  fill, under its rate limit, least recently served) with ``FOR UPDATE SKIP LOCKED``
  under a fresh token (`minlog.store.owners`), after locking that tenant's state row
  (``tenants``: turn, recent send times) with ``FOR UPDATE SKIP LOCKED`` and recording
  the send in the same transaction, so rate limits and turns hold for every host.
  Workers on several hosts never take the same entry; an expired
  lease returns the entry to the pool, and only the current lease settles an entry. Every
  few seconds a claim also takes back the leases of owners of this host that are gone (a
  killed process, a closed instance): their batches do not wait for the lease to run out.
* The schema (configurable name) is created and migrated by the library under an advisory
  lock, versioned in ``meta`` (`minlog.store.postgres_schema`, with the settings).
* psycopg errors become `StoreError`s; read-only steps are retried once on a lost
  connection.
* ``durability`` sets ``synchronous_commit`` on its connections: ``"power"`` (default)
  ``on``, ``"process"`` ``off`` (`minlog.store.base.Durability`).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, TypeVar

from minlog import forking
from minlog.delivery.policy import RateLimit
from minlog.delivery.schedule import DeliverySchedule, unscheduled
from minlog.errors import ConfigurationError, StoreError
from minlog.store import owners, postgres_schema, postgres_turns
from minlog.store.base import (
    DEFAULT_DURABILITY,
    POSTGRES_SYNCHRONOUS_COMMIT,
    DeadLetter,
    Durability,
    Lease,
    NewEntry,
    OutboxEntry,
    StoreCounts,
)
from minlog.store.base import durability as _durability
from minlog.store.postgres_schema import SCHEMA_VERSION

try:
    import psycopg
    from psycopg import sql
    from psycopg_pool import ConnectionPool
except ImportError as e:  # the class stays importable; making a store says what to install
    _NO_PSYCOPG: ImportError | None = e
else:
    _NO_PSYCOPG = None

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

#: How often a claim asks again when another claim held the tenant it could serve.
_CONTENDED_TRIES: Final = 10
_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,50}")
_T = TypeVar("_T")


class _PartitionGone(Exception):
    """An insert found no partition for its day (dropped by another process)."""


class PostgresStore:
    """The `Store` on a PostgreSQL database (see the module docstring). Thread-safe."""

    def __init__(
        self,
        url: str,
        *,
        schema: str = "minlog",
        min_size: int = 1,
        max_size: int = 4,
        partitions_ahead: int = 3,
        connect_timeout: float = 10.0,
        create: bool = True,
        read_only: bool = False,
        durability: Durability = DEFAULT_DURABILITY,
    ) -> None:
        if _NO_PSYCOPG is not None:
            raise ConfigurationError(
                "the PostgreSQL store needs psycopg: pip install 'minlog[postgres]'"
            ) from _NO_PSYCOPG
        if not _IDENT.fullmatch(schema):
            raise ConfigurationError(
                "schema: must be a lower-case SQL identifier (letters, digits, underscore)"
            )
        self.url = url
        self.schema = schema
        self.partitions_ahead = partitions_ahead
        self._s = sql.Identifier(schema)
        self._sizes = (min_size, max_size)
        self._timeout = connect_timeout
        self._owner = owners.Owner()
        self._partitions: set[int] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.read_only = read_only
        self.durability = _durability(durability)
        self._pool = self._make_pool()
        try:
            self._migrate(create=create and not read_only)
        except BaseException:
            self._pool.close()
            raise

    def _make_pool(self) -> ConnectionPool:
        try:
            with forking.passage():
                pool = ConnectionPool(
                    self.url, min_size=self._sizes[0], max_size=self._sizes[1],
                    open=False, kwargs=self._connect_options(),
                    timeout=self._timeout, name="minlog",
                )
                pool.open(wait=True, timeout=self._timeout)
        except (psycopg.Error, Exception) as e:
            raise StoreError(f"cannot connect to PostgreSQL: {type(e).__name__}: {e}") from e
        return pool

    def _connect_options(self) -> dict[str, Any]:
        settings = [f"-c synchronous_commit={POSTGRES_SYNCHRONOUS_COMMIT[self.durability]}"]
        if self.read_only:
            settings.append("-c default_transaction_read_only=on")
        return {"connect_timeout": int(self._timeout), "options": " ".join(settings)}

    def after_fork(self) -> None:
        """In a forked child: a fresh pool (the parent's connections are never touched)."""
        self._lock = threading.Lock()
        self._owner.renew()
        forking.abandon(self._pool)
        self._pool = self._make_pool()

    # ------------------------------------------------------------------ plumbing

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=self._s)

    def _run(self, fn: Callable[[psycopg.Connection[Any]], _T], *, retry: bool = False,
             lost_partition: bool = False) -> _T:
        """Run ``fn`` in one transaction; psycopg errors become `StoreError`. Read-only
        steps (``retry=True``) are tried once more on a lost connection. With
        ``lost_partition``, a row that finds no seen-set partition raises `_PartitionGone`
        (the transaction was rolled back)."""
        if self._closed:
            raise StoreError("the store is closed")
        for attempt in (1, 2):
            try:
                with forking.passage(), self._pool.connection() as conn, conn.transaction():
                    return fn(conn)
            except psycopg.errors.CheckViolation as e:
                if lost_partition:  # the only CHECK here is partition routing
                    raise _PartitionGone() from e
                raise StoreError(f"PostgreSQL store: {type(e).__name__}: {e}") from e
            except psycopg.OperationalError as e:
                if retry and attempt == 1:
                    continue
                raise StoreError(f"PostgreSQL connection failed: {e}") from e
            except psycopg.Error as e:
                raise StoreError(f"PostgreSQL store: {type(e).__name__}: {e}") from e
            except Exception as e:
                if type(e).__module__.startswith("psycopg_pool"):
                    raise StoreError(f"PostgreSQL pool: {e}") from e
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _migrate(self, *, create: bool) -> None:
        if not create:
            self._run(lambda c: postgres_schema.check_version(
                c, self._q, self.schema, read_only=self.read_only))
            if self.read_only:
                return
        self._run(lambda c: postgres_schema.migrate(c, self._q, self.schema))

    # ------------------------------------------------------------------ partitions

    def _ddl_lock(self) -> str:
        return f"minlog:{self.schema}:partitions"

    def prepare(self, today: int) -> None:
        """Create the partitions of ``today`` and ``partitions_ahead`` days after it, so
        that writers never wait for a partition at midnight."""
        self._ensure_days(range(today, today + self.partitions_ahead + 1))

    @contextlib.contextmanager
    def _ddl(self) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit connection holding the schema's partition lock (a session
        advisory lock), so that one process at a time creates or drops partitions."""
        if self._closed:
            raise StoreError("the store is closed")
        with forking.passage(), self._pool.connection() as conn:
            conn.autocommit = True
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [self._ddl_lock()])
            try:
                yield conn
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [self._ddl_lock()])

    def _ensure_days(self, days: Sequence[int] | range) -> None:
        """Make sure each day has its partition (`minlog.store.postgres_schema`)."""
        missing = [d for d in days if d not in self._partitions]
        if not missing:
            return
        try:
            with self._ddl() as conn:
                postgres_schema.attach_days(conn, self._q, self.schema, missing)
        except psycopg.Error as e:
            raise StoreError(f"cannot create the seen-set partitions of days {missing}: "
                             f"{type(e).__name__}: {e}") from e
        self._partitions.update(missing)

    def drop_partitions(self, before_day: int) -> int:
        """Detach (concurrently: writers are not blocked) and drop the day partitions
        older than ``before_day``; returns how many were dropped."""
        dropped = 0
        try:
            with self._ddl() as conn:
                for day in postgres_schema.drop_days(conn, self._q, self.schema, before_day):
                    self._partitions.discard(day)
                    dropped += 1
        except psycopg.Error as e:
            raise StoreError(f"cannot drop old seen-set partitions: {e}") from e
        return dropped

    # ------------------------------------------------------------------ seen-set + outbox

    def append(self, entries: Sequence[NewEntry], now: float) -> list[bool]:
        if not entries:
            return []
        days = [e[0] for e in entries]
        keys = [e[1] for e in entries]
        payloads = [e[2] for e in entries]
        tenants = [e[3] for e in entries]
        day_set = set(days)
        self._ensure_days(sorted(day_set))
        statement = self._q(
            "WITH input AS ("
            "  SELECT DISTINCT ON (day, key) day, key, payload, tenant, ord"
            "  FROM unnest(%(days)b::integer[], %(keys)b::bytea[], %(payloads)b::bytea[],"
            "  %(tenants)s::text[]) WITH ORDINALITY AS t(day, key, payload, tenant, ord)"
            "  ORDER BY day, key, ord),"
            " ins AS (INSERT INTO {s}.seen (day, key) SELECT day, key FROM input"
            "  ON CONFLICT DO NOTHING RETURNING day, key),"
            " outb AS (INSERT INTO {s}.outbox (key, payload, tenant, due, accepted_at)"
            "  SELECT i.key, i.payload, i.tenant, %(now)s, %(now)s FROM input i"
            "  JOIN ins USING (day, key) ORDER BY i.ord RETURNING 1)"
            " SELECT day, key FROM ins")
        params = {"days": days, "keys": keys, "payloads": payloads, "tenants": tenants,
                  "now": now}

        def step(conn: psycopg.Connection[Any]) -> set[tuple[int, bytes]]:
            rows = conn.execute(statement, params).fetchall()
            return {(r[0], bytes(r[1])) for r in rows}

        try:
            new = self._run(step, lost_partition=True)
        except _PartitionGone:
            # Another process dropped a partition this one knew of (its day was pruned
            # there first). Nothing was written: make it again and retry once.
            self._partitions.difference_update(day_set)
            self._ensure_days(sorted(day_set))
            new = self._run(step)
        result: list[bool] = []
        for day, key in zip(days, keys, strict=True):
            pair = (day, key)
            if pair in new:
                new.discard(pair)  # a repeat in the batch counts once, the first
                result.append(True)
            else:
                result.append(False)
        return result

    def horizon_days(self, at_least: int) -> int:
        if self.read_only:
            return self._run(lambda c: postgres_schema.horizon(c, self._q), retry=True)
        return self._run(lambda c: postgres_schema.raise_horizon(c, self._q, at_least))

    def key_fingerprint(self, record: bytes | None = None, *,
                        replace: bool = False) -> bytes | None:
        if record is None or self.read_only:
            return self._run(lambda c: postgres_schema.fingerprint(c, self._q), retry=True)
        return self._run(lambda c: postgres_schema.record_fingerprint(
            c, self._q, record, replace=replace))

    def holds_data(self) -> bool:
        row = self._run(lambda c: c.execute(self._q(
            "SELECT EXISTS (SELECT 1 FROM {s}.seen) OR EXISTS (SELECT 1 FROM {s}.outbox) "
            "OR EXISTS (SELECT 1 FROM {s}.dead) OR EXISTS (SELECT 1 FROM {s}.aliases)")
        ).fetchone(), retry=True)
        return bool(row and row[0])

    def keys_of(self, day: int) -> set[bytes]:
        return self._run(lambda c: {bytes(r[0]) for r in c.execute(
            self._q("SELECT key FROM {s}.seen WHERE day = %s"), [day])}, retry=True)

    def prune(self, before_day: int) -> int:
        """Drop the day partitions before ``before_day``; returns the keys forgotten."""
        row = self._run(lambda c: c.execute(
            self._q("SELECT count(*) FROM {s}.seen WHERE day < %s"), [before_day]).fetchone(),
            retry=True)
        self.drop_partitions(before_day)
        return 0 if row is None else int(row[0])

    # ------------------------------------------------------------------ delivery

    def claim(self, limit: int, lease_seconds: float, now: float, *,
              schedule: DeliverySchedule | None = None, fill: bool = True) -> Lease:
        token = self._owner.token()
        until = now + lease_seconds
        reap = self._owner.reap_due(now)
        plan = schedule or unscheduled(limit)

        def step(conn: psycopg.Connection[Any]
                 ) -> tuple[list[Any], float | None, bool, bool]:
            if reap:
                self._reap(conn)
            return postgres_turns.claim_rows(
                conn, self._q, plan, limit=limit, token=token, until=until, now=now,
                fill=fill, turns=f"{self.schema}.tenant_turns")

        # A tenant passed over because another claim held it: ask again in a new
        # transaction once that claim has had a moment to commit, a few times at most
        # (a claim's transaction takes milliseconds; nothing waits on a lock meanwhile).
        for attempt in range(_CONTENDED_TRIES):
            rows, next_at, held, contended = self._run(step)
            reap = False
            if rows or not contended:
                break
            time.sleep(0.002 * (attempt + 1))
        rows.sort(key=lambda r: r[0])
        return Lease(token, tuple(OutboxEntry(r[0], bytes(r[1]), bytes(r[2]), r[3], r[4])
                                  for r in rows), until, next_at, held)

    def reserve_send(self, tenant: str, limit: RateLimit | None, now: float) -> float:
        if limit is None:
            return 0.0
        return self._run(lambda c: postgres_turns.reserve_send(c, self._q, tenant, limit,
                                                                now))

    def _reap(self, conn: psycopg.Connection[Any], *, mine: bool = False) -> int:
        """Return entries leased by owners of this host that are gone
        (`minlog.store.owners`), or by this instance (``mine``), to pending, due at once;
        one check per owner."""
        tokens = [str(r[0]) for r in conn.execute(self._q(
            "SELECT DISTINCT owner FROM {s}.outbox WHERE state = 1 AND owner IS NOT NULL"))]
        prefix = self._owner.prefix
        chosen = [t for t in tokens if t.startswith(prefix)] if mine else owners.gone(tokens)
        if not chosen:
            return 0
        return conn.execute(self._q(
            "UPDATE {s}.outbox SET state = 0, owner = NULL, due = accepted_at "
            "WHERE state = 1 AND owner = ANY(%s)"), [chosen]).rowcount

    def release_leases(self) -> int:
        return self._run(lambda conn: self._reap(conn, mine=True))

    def ack(self, lease: str, ids: Sequence[int]) -> None:
        if ids:
            self._run(lambda c: postgres_turns.ack(c, self._q, lease, ids))

    def retry(self, lease: str, ids: Sequence[int], not_before: float) -> None:
        if ids:
            self._run(lambda c: c.execute(self._q(
                "UPDATE {s}.outbox SET state = 0, due = %s, owner = NULL "
                "WHERE id = ANY(%s) AND owner = %s"), [not_before, list(ids), lease]))

    def bury(self, lease: str, failures: Sequence[tuple[int, str, str]], now: float) -> None:
        if not failures:
            return
        statement = self._q(
            "WITH f AS (SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[]) "
            " AS f(id, code, text)),"
            " moved AS (DELETE FROM {s}.outbox o USING f WHERE o.id = f.id AND o.owner = %s"
            "  RETURNING o.id, o.key, o.payload, o.attempts, f.code, f.text, o.accepted_at,"
            "  o.tenant)"
            " INSERT INTO {s}.dead (id, key, payload, attempts, code, text, died_at,"
            " accepted_at, tenant)"
            " SELECT id, key, payload, attempts, code, text, %s, accepted_at, tenant FROM moved"
            " ON CONFLICT (id) DO UPDATE SET code = excluded.code, text = excluded.text,"
            " died_at = excluded.died_at")
        self._run(lambda c: c.execute(statement, [
            [f[0] for f in failures], [f[1] for f in failures], [f[2] for f in failures],
            lease, now]))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._run(lambda c: c.execute(self._q(
            "SELECT id, key, payload, attempts, code, text, died_at, tenant FROM {s}.dead "
            "ORDER BY died_at, id LIMIT %s"), [limit]).fetchall(), retry=True)
        return [DeadLetter(r[0], bytes(r[1]), bytes(r[2]), *r[3:]) for r in rows]

    def redrive(self, ids: Sequence[int] | None, now: float) -> int:
        if ids is not None and not ids:
            return 0
        where = "" if ids is None else "WHERE id = ANY(%(ids)s)"
        statement = self._q(
            f"WITH moved AS (DELETE FROM {{s}}.dead {where} RETURNING *)"
            " INSERT INTO {s}.outbox (id, key, payload, tenant, state, attempts, due,"
            " accepted_at) SELECT id, key, payload, tenant, 0, 0, %(now)s,"
            " COALESCE(accepted_at, %(now)s) FROM moved")
        params: dict[str, Any] = {"now": now, "ids": list(ids or [])}
        return int(self._run(lambda c: c.execute(statement, params).rowcount))

    def counts(self) -> StoreCounts:
        def step(c: psycopg.Connection[Any]) -> StoreCounts:
            row = c.execute(self._q(
                "SELECT count(*) FILTER (WHERE state = 0), count(*) FILTER (WHERE state = 1), "
                "min(accepted_at) FROM {s}.outbox")).fetchone()
            dead = c.execute(self._q("SELECT count(*) FROM {s}.dead")).fetchone()
            assert row is not None
            assert dead is not None
            return StoreCounts(int(row[0]), int(row[1]), int(dead[0]),
                               None if row[2] is None else float(row[2]),
                               postgres_turns.delivered(c, self._q))

        return self._run(step, retry=True)

    def tenant_counts(self) -> dict[str, StoreCounts]:
        return self._run(lambda c: postgres_turns.tenant_counts(c, self._q), retry=True)

    def accepted_counts(self, bucket: int) -> dict[str, dict[int, int]]:
        if bucket < 1:
            raise ValueError("bucket must be at least 1 second")
        return self._run(lambda c: postgres_turns.accepted_counts(c, self._q, bucket),
                         retry=True)

    def next_due(self) -> float | None:
        row = self._run(lambda c: c.execute(
            self._q("SELECT min(due) FROM {s}.outbox")).fetchone(), retry=True)
        return None if row is None or row[0] is None else float(row[0])

    # ------------------------------------------------------------------ aliases

    def alias_for(self, scope: str, subject: bytes) -> str | None:
        row = self._run(lambda c: c.execute(self._q(
            "SELECT code FROM {s}.aliases WHERE scope = %s AND subject = %s"),
            [scope, subject]).fetchone(), retry=True)
        return None if row is None else str(row[0])

    def add_alias(self, scope: str, code: str, subject: bytes, sealed: bytes) -> bool:
        return bool(self._run(lambda c: c.execute(self._q(
            "INSERT INTO {s}.aliases (scope, code, subject, sealed) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING"), [scope, code, subject, sealed]).rowcount == 1))

    def resolve_alias(self, scope: str, code: str) -> bytes | None:
        row = self._run(lambda c: c.execute(self._q(
            "SELECT sealed FROM {s}.aliases WHERE scope = %s AND code = %s"),
            [scope, code]).fetchone(), retry=True)
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._owner.close()
            with forking.passage():
                self._pool.close()

    def drop_schema(self) -> None:
        """Remove the whole schema and its data (for tests and decommissioning)."""
        with forking.passage(), self._pool.connection() as conn:
            conn.autocommit = True
            conn.execute(self._q("DROP SCHEMA IF EXISTS {s} CASCADE"))

    # ------------------------------------------------------------------ aliases (identity)

    def highest_alias_number(self, scope: str, stem: str) -> int:
        """The highest ``n`` for which ``stem + str(n)`` is a code in ``scope`` (the bare
        ``stem`` counts as 1; 0 for none). Reads the scope's codes that start with ``stem``
        (the primary key ``(scope, code)`` narrows it to the scope)."""
        row = self._run(lambda c: c.execute(self._q(
            "SELECT max(CASE WHEN code = %(stem)s THEN 1"
            " ELSE substr(code, %(n)s)::numeric END)"
            " FROM {s}.aliases WHERE scope = %(scope)s AND left(code, %(len)s) = %(stem)s"
            " AND (code = %(stem)s OR substr(code, %(n)s) ~ '^[0-9]+$')"),
            {"scope": scope, "stem": stem, "len": len(stem), "n": len(stem) + 1}).fetchone(),
            retry=True)
        return 0 if row is None or row[0] is None else int(row[0])

    def list_aliases(self, scope: str) -> list[tuple[str, bytes]]:
        """Every ``(code, sealed)`` registered in ``scope``, in code order (an operator's
        listing)."""
        rows = self._run(lambda c: c.execute(self._q(
            "SELECT code, sealed FROM {s}.aliases WHERE scope = %s ORDER BY code"),
            [scope]).fetchall(), retry=True)
        return [(str(code), bytes(sealed)) for code, sealed in rows]
