"""The SQLite store's schema, created and migrated with sqlite-utils.

``_meta`` holds the file's ``schema_version`` and the store's settings: the dedup horizon
(``horizon_days``) and the fingerprint of its master key (``key_fingerprint``, hex; rows
that a file of this version may lack until it is next opened with a key). `migrate`
brings a file up to `SCHEMA_VERSION` one step at a time, inside the caller's
transaction, and refuses a file made by a newer minlog; `check` is what a read-only
opening does instead.

Version 2 (this one):

* ``seen (day, key)``: the seen-set, its primary key the pair (``WITHOUT ROWID``: the
  table is its index). Pruning a day is a range delete on the key's first column.
* ``outbox``: one row per entry to deliver: its key (whose hex is the SequenceNumber),
  sealed payload, tenant, state (0 pending, 1 leased), lease ``owner`` token, attempts,
  ``due`` (when pending: when it may be sent; when leased: when the lease runs out) and
  ``accepted_at``. Indexed by ``(due, id)`` and, for leased rows, by ``owner``
  (``outbox_leased``, added to files of this version when they are opened).
* ``dead``: dead letters, with the reason's code and text; ids of their own
  (``AUTOINCREMENT``: never reused, so an operator's id always means one letter).
* ``aliases``: the identity codes issued per scope.

Version 1 (minlog 0.1) kept key blocks and outbox segments. Migrating moves every open
outbox entry and every dead letter over unchanged (their payloads stay readable: the
sealing key did not change) and drops the key blocks, whose digests the new key
derivation does not reproduce: an access of a day before the upgrade that is recorded
again after it is logged once more.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

import sqlite_utils

from minlog.errors import ConfigurationError, StoreError

__all__ = ["SCHEMA_VERSION", "check", "migrate", "version"]

SCHEMA_VERSION: Final = 2


def _create_2(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS seen (day INTEGER NOT NULL, key BLOB NOT NULL, "
               "PRIMARY KEY (day, key)) WITHOUT ROWID")
    db.table("outbox").create(
        {"id": int, "key": bytes, "payload": bytes, "tenant": str, "state": int,
         "attempts": int, "due": float, "accepted_at": float, "owner": str},
        pk="id", not_null={"key", "payload", "tenant", "state", "attempts", "due",
                           "accepted_at"},
        defaults={"tenant": "", "state": 0, "attempts": 0}, if_not_exists=True)
    db.table("outbox").create_index(["due", "id"], index_name="outbox_due", if_not_exists=True)
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
_STEPS: Final[dict[int, Callable[[sqlite_utils.Database], None]]] = {2: _migrate_1_to_2}


def version(db: sqlite_utils.Database) -> int:
    """The schema version of the file behind ``db``: 0 when it holds no minlog store."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_meta'"
                      ).fetchone():
        return 0
    row = db.execute("SELECT value FROM _meta WHERE name = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def check(db: sqlite_utils.Database, name: str) -> None:
    """Refuse a file that holds no minlog store of exactly `SCHEMA_VERSION` (for a store
    opened read-only, which cannot migrate)."""
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
    else:
        for step in range(current + 1, SCHEMA_VERSION + 1):
            _STEPS[step](db)
        _ensure_2(db)
    db.execute("INSERT OR REPLACE INTO _meta (name, value) VALUES ('schema_version', ?)",
               [SCHEMA_VERSION])

