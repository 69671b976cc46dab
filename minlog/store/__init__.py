"""Durable stores: the `Store` protocol, the embedded SQLite store, the PostgreSQL store.

Stores persist; the ledger (`minlog.core.ledger`) decides. Both stores pass one contract
suite (``tests/test_store_contract.py``).
"""

import os
from typing import Any

from minlog.store.base import DeadLetter, Lease, NewEntry, OutboxEntry, Store, StoreCounts

__all__ = ["DeadLetter", "Lease", "NewEntry", "OutboxEntry", "Store", "StoreCounts",
           "is_postgres_url", "open_store"]


def is_postgres_url(target: object) -> bool:
    """Whether ``target`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def open_store(target: str | os.PathLike[str] | Store, **options: Any) -> Store:
    """A `Store` for ``target``: a PostgreSQL URL, a SQLite file path, or a store itself."""
    if not isinstance(target, str | os.PathLike):
        return target
    if is_postgres_url(target):
        from minlog.store.postgres import PostgresStore

        return PostgresStore(str(target), **options)
    from minlog.store.sqlite import SQLiteStore

    return SQLiteStore(os.fspath(target), **options)
