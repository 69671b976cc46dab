"""The SQLite store's schema, created and migrated with sqlite-utils.

``_meta`` holds the file's ``schema_version`` and the store's settings: the dedup horizon
(``horizon_days``) and the fingerprint of its master key (``key_fingerprint``, hex; rows
that a file of this version may lack until it is next opened with a key). `migrate`
brings a file up to `SCHEMA_VERSION` one step at a time, inside the caller's
transaction, and refuses a file made by a newer minlog; `check_version` (then `check`)
is what a read-only opening does instead.

Version 3 (this one) adds to version 2:

* ``tenants``: the delivery state of each tenant (`minlog.delivery.schedule`): its
  ``turn`` (0 never served; the most recently served has the highest), when it was last
  ``served``, and its recent send times (``sent``, little-endian doubles), taken and
  written inside the claim transaction so that rate limits and turns hold for every
  process on the file; and how many of its entries were ``delivered`` (acked), counted
  in the ack's transaction. Migrating from version 2 adds the (empty) table; a file of
  version 3 made before ``delivered`` existed gains the column when it is opened.

Version 2:

* ``seen (day, key)``: the seen-set, its primary key the pair (``WITHOUT ROWID``: the
  table is its index). Pruning a day is a range delete on the key's first column.
* ``outbox``: one row per entry to deliver: its key (whose hex is the SequenceNumber),
  sealed payload, tenant, state (0 pending, 1 leased), lease ``owner`` token, attempts,
  ``due`` (when pending: when it may be sent; when leased: when the lease runs out) and
  ``accepted_at``. Leased rows are indexed by ``owner`` (``outbox_leased``, a partial
  index: recording, which inserts pending rows, never touches it; added to files of this
  version when they are opened).
* ``dead``: dead letters, with the reason's code and text; ids of their own
  (``AUTOINCREMENT``: never reused, so an operator's id always means one letter).
* ``aliases``: the identity codes issued per scope.

After migrating, `check` holds the file to the layout this version expects, by
sqlite-utils' introspection (tables, columns, primary keys, indexes): a file altered by
hand, or not a minlog store at all, is refused naming what is wrong, instead of failing
later deep inside a query. `describe` (the same introspection) tells an inspecting
command what a file holds. A future step that changes a table's columns uses
``db[table].transform(...)`` (sqlite-utils' rebuild of a table inside the caller's
transaction; it keeps ``AUTOINCREMENT``), or ``add_column`` for a plain new column.

Version 1 (minlog 0.1) kept key blocks and outbox segments. Migrating moves every open
outbox entry and every dead letter over unchanged (their payloads stay readable: the
sealing key did not change) and drops the key blocks, whose digests the new key
derivation does not reproduce: an access of a day before the upgrade that is recorded
again after it is logged once more.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
import sqlite_utils

from minlog.errors import ConfigurationError, StoreError

__all__ = ["LAYOUT", "SCHEMA_VERSION", "StoreLayout", "check", "check_version", "describe",
           "migrate", "version"]

SCHEMA_VERSION: Final = 3


def _create_2(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS seen (day INTEGER NOT NULL, key BLOB NOT NULL, "
               "PRIMARY KEY (day, key)) WITHOUT ROWID")
    db.table("outbox").create(
        {"id": int, "key": bytes, "payload": bytes, "tenant": str, "state": int,
         "attempts": int, "due": float, "accepted_at": float, "owner": str},
        pk="id", not_null={"key", "payload", "tenant", "state", "attempts", "due",
                           "accepted_at"},
        defaults={"tenant": "", "state": 0, "attempts": 0}, if_not_exists=True)
    # No index on due: each would cost a B-tree insert (a WAL page) per first-of-day
    # log; claims read the outbox in row order (acceptance order) instead.
    _ensure_2(db)
    # Dead letters have ids of their own, never reused (outbox row ids may be).
    db.execute("CREATE TABLE IF NOT EXISTS dead (id INTEGER PRIMARY KEY AUTOINCREMENT, "
               "key BLOB NOT NULL, payload BLOB NOT NULL, attempts INTEGER NOT NULL, "
               "code TEXT NOT NULL, text TEXT NOT NULL, died_at REAL NOT NULL, "
               "accepted_at REAL, tenant TEXT NOT NULL DEFAULT '')")
    db.table("aliases").create(
        {"scope": str, "code": str, "subject": bytes, "sealed": bytes},
        pk=("scope", "code"), not_null={"subject", "sealed"}, if_not_exists=True)
    db.table("aliases").create_index(
        ["scope", "subject"], index_name="aliases_subject", unique=True, if_not_exists=True)


def _ensure_2(db: sqlite_utils.Database) -> None:
    """What version 2 gained later, without changing its meaning (a file with or without
    it works the same): the owners of leased entries, indexed (only leased rows)."""
    db.execute("CREATE INDEX IF NOT EXISTS outbox_leased ON outbox (owner) WHERE state = 1")


def _add_3(db: sqlite_utils.Database) -> None:
    """Version 3: the tenants' delivery state (turns, recent send times, deliveries)."""
    db.execute("CREATE TABLE IF NOT EXISTS tenants (tenant TEXT PRIMARY KEY, "
               "turn INTEGER NOT NULL DEFAULT 0, served REAL, "
               "sent BLOB NOT NULL DEFAULT x'', delivered INTEGER NOT NULL DEFAULT 0)")


def _ensure_3(db: sqlite_utils.Database) -> None:
    """What version 3 gained before its release, for a file a development version made
    (0 delivered until then): the tenants' delivered counts."""
    if "delivered" not in db.table("tenants").columns_dict:
        db.execute("ALTER TABLE tenants ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0")


def _migrate_1_to_2(db: sqlite_utils.Database) -> None:
    """Key blocks and outbox segments (0.1) to rows: every open entry moves over."""
    db.execute("ALTER TABLE outbox RENAME TO outbox_v1")
    db.execute("ALTER TABLE dead RENAME TO dead_v1")
    db.execute("DROP INDEX IF EXISTS outbox_due")
    db.execute("DROP TABLE IF EXISTS seen")
    _create_2(db)
    rows = db.execute("SELECT n, keys, sizes, payloads, done, attempts, due, accepted_at "
                      "FROM outbox_v1 ORDER BY id").fetchall()
    moved: list[tuple[Any, ...]] = []
    for n, keys, sizes, payloads, done, attempts, due, accepted_at in rows:
        offset = 0
        for i, size in enumerate(struct.unpack(f"<{n}I", sizes)):
            payload = bytes(payloads[offset : offset + size])
            offset += size
            if done is not None and done[i >> 3] & (1 << (i & 7)):
                continue  # delivered or dead already
            moved.append((bytes(keys[i * 16 : (i + 1) * 16]), payload, attempts,
                          min(due, accepted_at), accepted_at))
    db.conn.executemany(
        "INSERT INTO outbox (key, payload, tenant, state, attempts, due, accepted_at) "
        "VALUES (?, ?, '', 0, ?, ?, ?)", moved)
    db.execute("DROP TABLE outbox_v1")
    db.execute("INSERT INTO dead (id, key, payload, attempts, code, text, died_at, "
               "accepted_at) SELECT id, key, payload, attempts, code, text, died_at, "
               "accepted_at FROM dead_v1 ORDER BY id")
    db.execute("DROP TABLE dead_v1")


#: The step that brings a file of version ``n - 1`` to version ``n``.
_STEPS: Final[dict[int, Callable[[sqlite_utils.Database], None]]] = {
    2: _migrate_1_to_2, 3: _add_3}


def version(db: sqlite_utils.Database) -> int:
    """The schema version of the file behind ``db``: 0 when it holds no minlog store."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_meta'"
                      ).fetchone():
        return 0
    row = db.execute("SELECT value FROM _meta WHERE name = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def check_version(db: sqlite_utils.Database, name: str) -> None:
    """Refuse a file that holds no minlog store of exactly `SCHEMA_VERSION` (for a store
    opened read-only, which cannot migrate; `check` then holds it to the layout)."""
    current = version(db)
    if current == 0:
        raise StoreError(f"{name} holds no minlog store")
    _too_new(current, name)
    if current < SCHEMA_VERSION:
        raise ConfigurationError(
            f"{name} has schema version {current}: open it once with this minlog (the "
            f"application, or a command that writes, such as minlog drain) to migrate it")


def _too_new(current: int, name: str) -> None:
    if current > SCHEMA_VERSION:
        raise ConfigurationError(
            f"{name} has schema version {current}; this minlog knows up to "
            f"{SCHEMA_VERSION}: upgrade minlog")


def migrate(db: sqlite_utils.Database, name: str) -> None:
    """Bring the file behind ``db`` (called ``name`` in errors) to `SCHEMA_VERSION`."""
    db.execute("CREATE TABLE IF NOT EXISTS _meta (name TEXT PRIMARY KEY, value)")
    current = version(db)
    _too_new(current, name)
    if current == 0:  # a new file goes straight to the current version
        _create_2(db)
        _add_3(db)
    else:
        for step in range(current + 1, SCHEMA_VERSION + 1):
            _STEPS[step](db)
        _ensure_2(db)
        _ensure_3(db)
    db.execute("INSERT OR REPLACE INTO _meta (name, value) VALUES ('schema_version', ?)",
               [SCHEMA_VERSION])
    check(db, name)


#: The tables of this version: each one's columns and primary key, as SQLite reports them.
LAYOUT: Final[Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "seen": (("day", "key"), ("day", "key")),
    "outbox": (("id", "key", "payload", "tenant", "state", "attempts", "due", "accepted_at",
                "owner"), ("id",)),
    "dead": (("id", "key", "payload", "attempts", "code", "text", "died_at", "accepted_at",
              "tenant"), ("id",)),
    "aliases": (("scope", "code", "subject", "sealed"), ("scope", "code")),
    "tenants": (("tenant", "turn", "served", "sent", "delivered"), ("tenant",)),
    "_meta": (("name", "value"), ("name",)),
}
#: The indexes of this version, by table.
INDEXES: Final[Mapping[str, frozenset[str]]] = {
    "aliases": frozenset({"aliases_subject"})}


def check(db: sqlite_utils.Database, name: str) -> None:
    """Refuse (`StoreError`, naming the table and what is wrong) a file whose tables are
    not this version's layout (`LAYOUT`, `INDEXES`), as sqlite-utils introspects them."""
    present = set(db.table_names())
    for table, (columns, pk) in LAYOUT.items():
        if table not in present:
            raise StoreError(f"{name} is not a minlog store of schema {SCHEMA_VERSION}: "
                             f"the table {table} is missing")
        t = db.table(table)
        have = tuple(t.columns_dict)
        if set(have) != set(columns):
            missing = sorted(set(columns) - set(have))
            extra = sorted(set(have) - set(columns))
            raise StoreError(
                f"{name}: the table {table} does not have the columns of schema "
                f"{SCHEMA_VERSION} (missing: {', '.join(missing) or '-'}; unexpected: "
                f"{', '.join(extra) or '-'}); was it altered by hand?")
        if tuple(t.pks) != pk:
            raise StoreError(f"{name}: the table {table} has the primary key "
                             f"{', '.join(t.pks)}, not {', '.join(pk)}")
        wanted = INDEXES.get(table, frozenset())
        missing_ix = wanted - {ix.name for ix in t.indexes}
        if missing_ix:
            raise StoreError(f"{name}: the table {table} lacks the index "
                             f"{', '.join(sorted(missing_ix))}")


@attrs.frozen(slots=True)
class StoreLayout:
    """What a SQLite store file holds (`describe`): its schema version, its tables with
    their row counts and columns, and SQLite's journal mode and page figures."""

    schema_version: int
    tables: Mapping[str, int]
    columns: Mapping[str, tuple[str, ...]]
    journal_mode: str
    page_size: int
    page_count: int

    @property
    def size(self) -> int:
        """Bytes in the main file (pages times page size)."""
        return self.page_size * self.page_count


def describe(db: sqlite_utils.Database) -> StoreLayout:
    """The layout of the file behind ``db``, read-only (sqlite-utils' introspection)."""
    row = db.execute("SELECT value FROM _meta WHERE name = 'schema_version'").fetchone() \
        if db.table("_meta").exists() else None
    names = sorted(t for t in db.table_names() if not t.startswith("sqlite_"))
    return StoreLayout(
        schema_version=int(row[0]) if row else 0,
        tables={t: db.table(t).count for t in names},
        columns={t: tuple(db.table(t).columns_dict) for t in names},
        journal_mode=str(db.execute("PRAGMA journal_mode").fetchone()[0]),
        page_size=int(db.execute("PRAGMA page_size").fetchone()[0]),
        page_count=int(db.execute("PRAGMA page_count").fetchone()[0]),
    )
