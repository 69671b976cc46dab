"""Durable stores: the `Store` protocol, the embedded SQLite store, the PostgreSQL store."""

import os
from typing import Any

from minlog.store.base import DeadLetter, OutboxEntry, Pending, Store, StoreCounts

__all__ = ["DeadLetter", "OutboxEntry", "Pending", "Store", "StoreCounts", "open_store"]


def open_store(target: str | os.PathLike[str] | Store, **options: Any) -> Store:
    """A `Store` for ``target``: a PostgreSQL URL, a SQLite file path, or a store itself."""
    if not isinstance(target, str | os.PathLike):
        return target
    text = os.fspath(target)
    if text.startswith(("postgresql://", "postgres://")):
        from minlog.store.postgres import PostgresStore

        return PostgresStore(text, **options)
    from minlog.store.sqlite import SQLiteStore

    return SQLiteStore(text, **options)

