"""The SQLite store's schema, created and migrated with sqlite-utils.

``_meta.schema_version`` holds the version a file has; `migrate` brings it up to
`SCHEMA_VERSION` one step at a time (inside the caller's transaction), and refuses a file
made by a newer minlog. Version 1: the key blocks (``seen``), the outbox segments
(``outbox``), dead letters (``dead``) and the identity alias registry (``aliases``); see
`minlog.store.sqlite` and `minlog.store.packed` for what their rows hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import sqlite_utils

from minlog.errors import ConfigurationError

__all__ = ["SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION: Final = 1


def _migrate_1(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS seen (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "day INTEGER NOT NULL, keys BLOB NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS seen_day ON seen (day)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "n INTEGER NOT NULL, settled INTEGER NOT NULL, keys BLOB NOT NULL, "
        "sizes BLOB NOT NULL, payloads BLOB NOT NULL, done BLOB, state INTEGER NOT NULL, "
        "attempts INTEGER NOT NULL, due REAL NOT NULL, accepted_at REAL NOT NULL, "
        "owner TEXT)")
    db.execute("CREATE INDEX IF NOT EXISTS outbox_due ON outbox (due, id)")
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


MIGRATIONS: Final[dict[int, Callable[[sqlite_utils.Database], None]]] = {1: _migrate_1}


def migrate(db: sqlite_utils.Database, name: str) -> None:
    """Bring the file behind ``db`` (called ``name`` in errors) to `SCHEMA_VERSION`."""
    db.execute("CREATE TABLE IF NOT EXISTS _meta (name TEXT PRIMARY KEY, value INTEGER)")
    row = db.execute("SELECT value FROM _meta WHERE name = 'schema_version'").fetchone()
    current = row[0] if row else 0
    if current > SCHEMA_VERSION:
        raise ConfigurationError(
            f"{name} has schema version {current}; this minlog knows up to "
            f"{SCHEMA_VERSION}: upgrade minlog"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[version](db)
    db.execute("INSERT OR REPLACE INTO _meta (name, value) VALUES ('schema_version', ?)",
               [SCHEMA_VERSION])
