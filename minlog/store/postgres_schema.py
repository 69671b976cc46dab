"""The PostgreSQL store's schema: its tables, created and migrated in versioned steps, and
the seen-set's day partitions.

``meta`` holds the schema's ``schema_version`` and the store's settings: the dedup
horizon (`horizon`, `raise_horizon`) and the fingerprint of its master key (in ``data``:
`fingerprint`, `record_fingerprint`). `migrate` brings a schema up to `SCHEMA_VERSION`
(the steps of `MIGRATIONS`, in order, then `ENSURE`) under an advisory lock, inside the
caller's transaction, and refuses a schema made by a newer minlog; `check_version` is
what an opening that may not migrate does instead.

The seen-set ``seen(day, key)`` is partitioned by day (``PARTITION BY RANGE (day)``),
one partition ``seen_d<day>`` per day: `attach_days` creates a day's partition apart and
then attaches it (``ATTACH PARTITION`` does not block inserts, where ``CREATE TABLE ...
PARTITION OF`` would block every writer for a moment); `drop_days` detaches old days
``CONCURRENTLY`` (writers are not blocked) and drops them. Both run on an autocommit
connection holding the schema's partition lock (`minlog.store.postgres`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final

from minlog.errors import ConfigurationError, StoreError

if TYPE_CHECKING:  # psycopg is optional (the postgres extra); only its types are named
    from minlog.store.postgres_turns import Conn, Query

__all__ = ["ENSURE", "MIGRATIONS", "SCHEMA_VERSION", "attach_days", "attached", "check_version",
           "drop_days", "fingerprint", "horizon", "migrate", "raise_horizon",
           "record_fingerprint", "version"]

SCHEMA_VERSION: Final = 4

#: The statements that bring a schema of version ``n - 1`` to version ``n`` (``{s}``: the
#: schema).
MIGRATIONS: Final[dict[int, list[str]]] = {
    1: [
        "CREATE TABLE IF NOT EXISTS {s}.seen (day integer NOT NULL, key bytea NOT NULL, "
        "PRIMARY KEY (day, key)) PARTITION BY RANGE (day)",
        "CREATE TABLE IF NOT EXISTS {s}.outbox (id bigserial PRIMARY KEY, key bytea NOT NULL, "
        "payload bytea NOT NULL, state smallint NOT NULL DEFAULT 0, "
        "attempts integer NOT NULL DEFAULT 0, due double precision NOT NULL, "
        "accepted_at double precision NOT NULL, owner text)",
        "CREATE INDEX IF NOT EXISTS outbox_due ON {s}.outbox (due, id)",
        "CREATE TABLE IF NOT EXISTS {s}.dead (id bigint PRIMARY KEY, key bytea NOT NULL, "
        "payload bytea NOT NULL, attempts integer NOT NULL, code text NOT NULL, "
        "text text NOT NULL, died_at double precision NOT NULL, accepted_at double precision)",
        "CREATE TABLE IF NOT EXISTS {s}.aliases (scope text NOT NULL, code text NOT NULL, "
        "subject bytea NOT NULL, sealed bytea NOT NULL, PRIMARY KEY (scope, code), "
        "UNIQUE (scope, subject))",
    ],
    # 2: outbox and dead letters know their tenant; the seen-set keys are derived anew
    # (the old ones are forgotten as their days are pruned).
    2: [
        "ALTER TABLE {s}.outbox ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT ''",
        "ALTER TABLE {s}.dead ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT ''",
    ],
    # 3: settings that are bytes (the master key's fingerprint); the owners of leased
    # entries found without reading the whole outbox (taking back a dead host's leases).
    3: [
        "ALTER TABLE {s}.meta ADD COLUMN IF NOT EXISTS data bytea",
        "CREATE INDEX IF NOT EXISTS outbox_leased ON {s}.outbox (owner) WHERE state = 1",
    ],
    # 4: each tenant's delivery state (`minlog.delivery.schedule`): its turn (from a
    # sequence: the most recently served has the highest), when it was last served and
    # its recent send times, locked by the claim that serves it (rate limits and turns
    # for every host); how many of its entries were delivered (acked).
    4: [
        "CREATE TABLE IF NOT EXISTS {s}.tenants (tenant text PRIMARY KEY, "
        "turn bigint NOT NULL DEFAULT 0, served double precision, "
        "sent double precision[] NOT NULL DEFAULT ARRAY[]::double precision[], "
        "delivered bigint NOT NULL DEFAULT 0)",
        "CREATE SEQUENCE IF NOT EXISTS {s}.tenant_turns",
    ],
}
#: What the current version gained before its release, for a schema a development
#: version made (run at every opening that migrates; each statement is idempotent).
ENSURE: Final[list[str]] = [
    "ALTER TABLE {s}.tenants ADD COLUMN IF NOT EXISTS delivered bigint NOT NULL DEFAULT 0",
]


def version(conn: Conn, q: Query, schema: str) -> int:
    """The version of the schema ``schema``: 0 when it holds no minlog store."""
    found = conn.execute("SELECT to_regclass(%s)", [f"{schema}.meta"]).fetchone()
    if found is None or found[0] is None:
        return 0
    row = conn.execute(q("SELECT value FROM {s}.meta WHERE name = 'schema_version'")
                       ).fetchone()
    return int(row[0]) if row else 0


def check_version(conn: Conn, q: Query, schema: str, *, read_only: bool) -> None:
    """Refuse a schema that holds no minlog store, and (``read_only``: it cannot be
    migrated) one that is not of `SCHEMA_VERSION`."""
    current = version(conn, q, schema)
    if current == 0:
        raise StoreError(f"the PostgreSQL schema {schema} holds no minlog store "
                         f"(check the URL and the schema)")
    if current != SCHEMA_VERSION and read_only:
        raise ConfigurationError(
            f"schema {schema} has version {current}, this minlog "
            f"{SCHEMA_VERSION}: open it once with this minlog (the application) "
            f"to migrate it" if current < SCHEMA_VERSION else
            f"schema {schema} has version {current}; this minlog knows up "
            f"to {SCHEMA_VERSION}: upgrade minlog")


def migrate(conn: Conn, q: Query, schema: str) -> None:
    """Create the schema ``schema`` or bring it to `SCHEMA_VERSION`, under the schema's
    advisory lock (one process at a time), in the caller's transaction."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"minlog:{schema}"])
    conn.execute(q("CREATE SCHEMA IF NOT EXISTS {s}"))
    conn.execute(q("CREATE TABLE IF NOT EXISTS {s}.meta (name text PRIMARY KEY, value integer)"))
    row = conn.execute(q("SELECT value FROM {s}.meta WHERE name = 'schema_version'")
                       ).fetchone()
    current = row[0] if row else 0
    if current > SCHEMA_VERSION:
        raise ConfigurationError(
            f"schema {schema} has version {current}; this minlog knows up to "
            f"{SCHEMA_VERSION}: upgrade minlog")
    for step in range(current + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[step]:
            conn.execute(q(statement))
    for statement in ENSURE:
        conn.execute(q(statement))
    conn.execute(q(
        "INSERT INTO {s}.meta (name, value) VALUES ('schema_version', %s) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value"), [SCHEMA_VERSION])


# ---------------------------------------------------------------------- settings (meta)


def horizon(conn: Conn, q: Query) -> int:
    """The dedup horizon recorded (0: none yet)."""
    row = conn.execute(q("SELECT value FROM {s}.meta WHERE name = 'horizon_days'")).fetchone()
    return 0 if row is None else int(row[0])


def raise_horizon(conn: Conn, q: Query, at_least: int) -> int:
    """Raise the recorded dedup horizon to at least ``at_least``; the horizon now."""
    row = conn.execute(q(
        "INSERT INTO {s}.meta (name, value) VALUES ('horizon_days', %s) "
        "ON CONFLICT (name) DO UPDATE SET value = GREATEST({s}.meta.value, "
        "excluded.value) RETURNING value"), [at_least]).fetchone()
    assert row is not None
    return int(row[0])


def fingerprint(conn: Conn, q: Query) -> bytes | None:
    """The fingerprint of the master key recorded (None: none yet)."""
    row = conn.execute(q("SELECT data FROM {s}.meta WHERE name = 'key_fingerprint'")
                       ).fetchone()
    return None if row is None or row[0] is None else bytes(row[0])


def record_fingerprint(conn: Conn, q: Query, record: bytes, *, replace: bool) -> bytes | None:
    """Record ``record`` as the master key's fingerprint unless one is recorded (or, with
    ``replace``, in its place); the fingerprint recorded now."""
    conn.execute(q(
        "INSERT INTO {s}.meta (name, data) VALUES ('key_fingerprint', %s) "
        "ON CONFLICT (name) DO " + ("UPDATE SET data = excluded.data" if replace
                                    else "NOTHING")), [record])
    return fingerprint(conn, q)


# ---------------------------------------------------------------------- day partitions


def attached(conn: Conn, schema: str) -> dict[int, bool]:
    """Day partitions attached to ``seen``: day -> detach pending (PostgreSQL 14+)."""
    rows = conn.execute(
        "SELECT c.relname, i.inhdetachpending FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "JOIN pg_namespace n ON n.oid = p.relnamespace "
        "WHERE p.relname = 'seen' AND n.nspname = %s", [schema]).fetchall()
    out = {}
    for name, pending in rows:
        if name.startswith("seen_d") and name[6:].isdigit():
            out[int(name[6:])] = bool(pending)
    return out


def _detach(conn: Conn, q: Query, day: int, *, finalize: bool = False) -> None:
    """Detach the partition of ``day`` without blocking writers (``CONCURRENTLY``, or
    ``FINALIZE`` to complete one that was interrupted) and drop it."""
    mode = "FINALIZE" if finalize else "CONCURRENTLY"
    conn.execute(q(f'ALTER TABLE {{s}}.seen DETACH PARTITION {{s}}."seen_d{int(day)}" {mode}'))
    conn.execute(q(f'DROP TABLE IF EXISTS {{s}}."seen_d{int(day)}"'))


def attach_days(conn: Conn, q: Query, schema: str, days: Iterable[int]) -> None:
    """Give each of ``days`` its partition (created apart, then attached), on the
    autocommit connection ``conn`` that holds the partition lock."""
    present = attached(conn, schema)
    for day in days:
        if present.get(day) is False:
            continue
        if present.get(day):  # an interrupted detach: finish it first
            _detach(conn, q, day, finalize=True)
        p = f'{{s}}."seen_d{int(day)}"'
        conn.execute(q(f"CREATE TABLE IF NOT EXISTS {p} (LIKE {{s}}.seen INCLUDING ALL)"))
        conn.execute(q(f"ALTER TABLE {{s}}.seen ATTACH PARTITION {p} "
                       f"FOR VALUES FROM ({int(day)}) TO ({int(day) + 1})"))


def drop_days(conn: Conn, q: Query, schema: str, before_day: int) -> Iterator[int]:
    """Detach (concurrently) and drop the day partitions older than ``before_day``, on
    the autocommit connection ``conn`` that holds the partition lock; yields each day
    once its partition is gone."""
    for day, pending in sorted(attached(conn, schema).items()):
        if day < before_day:
            _detach(conn, q, day, finalize=pending)
            yield day
