"""The SQLite store's recording path: which of a batch's ``(day, key)`` pairs are new to
the seen-set, and the outbox rows of the new ones (`minlog.store.sqlite_schema`).

`append` runs inside the caller's ``BEGIN IMMEDIATE`` transaction: the write lock is
held, so nobody adds a pair meanwhile, and the seen-set's primary key admits each pair
once. A single entry (the common case of ``record()``) costs two statements; a small
batch is inserted entry by entry (``INSERT OR IGNORE``); a large one is looked up in
chunks of a fixed size (one statement in SQLite's cache) and its new pairs inserted with
one ``executemany``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from minlog.store.base import NewEntry

__all__ = ["append"]

_SEEN_ONE: Final = "INSERT OR IGNORE INTO seen (day, key) VALUES (?, ?)"
_SEEN_MANY: Final = "INSERT INTO seen (day, key) VALUES (?, ?)"
_OUTBOX: Final = ("INSERT INTO outbox (key, payload, tenant, state, attempts, due, accepted_at) "
                  "VALUES (?, ?, ?, 0, 0, ?, ?)")
#: Keys looked up per statement when a large batch is appended (padded to this many, so
#: that SQLite's statement cache holds one statement).
_LOOKUP: Final = 250
#: Below this many entries, each is inserted on its own (``INSERT OR IGNORE``).
_ONE_BY_ONE: Final = 16


def append(conn: sqlite3.Connection, entries: Sequence[NewEntry], now: float) -> list[bool]:
    """Add ``entries`` (at least one) to the seen-set and the new ones to the outbox,
    accepted at ``now``; for each entry, whether it was new (a repeat in the batch counts
    once, the first)."""
    if len(entries) == 1:  # the common case of record(): two statements
        e = entries[0]
        new = conn.execute(_SEEN_ONE, (e[0], e[1])).rowcount == 1
        if new:
            conn.execute(_OUTBOX, (e[1], e[2], e[3], now, now))
        return [new]
    if len(entries) < _ONE_BY_ONE:
        answers = [conn.execute(_SEEN_ONE, (e[0], e[1])).rowcount == 1 for e in entries]
    else:
        answers = _append_many(conn, entries)
    conn.executemany(_OUTBOX, [(e[1], e[2], e[3], now, now)
                               for e, new in zip(entries, answers, strict=True) if new])
    return answers


def _append_many(conn: sqlite3.Connection, entries: Sequence[NewEntry]) -> list[bool]:
    """Look the pairs up (we hold the write lock: nobody adds any meanwhile), then insert
    the new ones with one ``executemany``."""
    by_day: dict[int, list[bytes]] = {}
    for e in entries:
        by_day.setdefault(e[0], []).append(e[1])
    known: set[tuple[int, bytes]] = set()
    lookup = f"SELECT key FROM seen WHERE day = ? AND key IN ({', '.join('?' * _LOOKUP)})"
    for day, keys in by_day.items():
        for start in range(0, len(keys), _LOOKUP):
            chunk = keys[start : start + _LOOKUP]
            chunk += [chunk[-1]] * (_LOOKUP - len(chunk))
            known.update((day, bytes(r[0])) for r in conn.execute(lookup, [day, *chunk]))
    answers = []
    new: list[tuple[int, bytes]] = []
    for e in entries:
        pair = (e[0], e[1])
        if pair in known:
            answers.append(False)
        else:
            known.add(pair)
            new.append(pair)
            answers.append(True)
    conn.executemany(_SEEN_MANY, new)
    return answers
