"""Which master key opens a store, and the one way to give a store a new one.

The master key decides the dedup keys, seals the outbox and names employees in the alias
registry: a store opened with another key would deliver nothing it holds (every pending
entry a ``minlog:unreadable`` dead letter), accept today's duplicates again and issue
new identity codes. So a key is never replaced silently:

* a store records the fingerprint of its key (`minlog.core.sealing.Keys.fingerprint`,
  which reveals nothing of the key) when it is first opened with one; a store made before
  fingerprints gets it at its next open with a key;
* a key whose fingerprint differs is refused (`ConfigurationError` naming the key);
* a key file is made only for a store that holds nothing yet (nothing to lose); for any
  other store a missing key file is an error: restore it from the backup;
* a new key for a store that holds data is an operator's explicit act, `rekey`
  (``minlog rekey STORE --force``), whose cost `rekey_cost` states.

`open_keyed` opens a store together with its key (for `MinLog.open`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from minlog.core.sealing import Keys, key_id
from minlog.errors import ConfigurationError
from minlog.events import emit
from minlog.keyfile import load_or_create_key
from minlog.store import Store, is_postgres_url, open_store
from minlog.store.base import Durability
from minlog.store.base import durability as _durability

__all__ = ["Key", "bind", "default_key_path", "master_key", "open_keyed", "rekey",
           "rekey_cost"]

#: What `MinLog.open` takes as ``key``: the secret, a key file path, or None (the default).
Key = bytes | str | os.PathLike[str] | None

_WHY: str = "see docs/operations.md, 'Keys'"


def default_key_path(target: object) -> Path | None:
    """``<file>.key`` beside a SQLite file; None for a PostgreSQL URL or a `Store`."""
    if isinstance(target, str | os.PathLike) and not is_postgres_url(target):
        return Path(os.fspath(target) + ".key")
    return None


def key_path(target: object, key: Key) -> Path | None:
    """The key file ``key`` names for ``target``: None when the secret is given as bytes.
    Raises `ConfigurationError` when there is neither (a PostgreSQL store needs ``key``)."""
    if isinstance(key, bytes):
        return None
    if key is not None:
        return Path(os.fspath(key))
    path = default_key_path(target)
    if path is None:
        raise ConfigurationError(
            "key: give the master secret (bytes or a key file path) for this store; every "
            "host of a PostgreSQL store needs the same one")
    return path


def master_key(store: Store, target: object, key: Key, *, create: bool = True
               ) -> tuple[bytes, str]:
    """The master secret for ``store`` (opened from ``target``) and how to name it in a
    message; it is checked against the store's fingerprint (`bind`). The key file is made
    only when it is missing, ``create`` is true, and the store records no key and holds
    nothing."""
    path = key_path(target, key)
    if path is None:
        assert isinstance(key, bytes)
        secret, name = key, "the master key given"
    else:
        name = f"the key file {path}"
        existed = path.exists()
        if not existed:
            recorded = store.key_fingerprint()
            if not create or recorded is not None or store.holds_data():
                raise ConfigurationError(_missing(path, target, recorded))
        secret = load_or_create_key(path, create=create)
        if not existed:
            emit("key_created", "created the key file %s for a new store: back it up now, "
                 "apart from the database backups", path, path=str(path))
    bind(store, secret, name)
    return secret, name


def open_keyed(target: str | os.PathLike[str] | Store, key: Key, *,
               store_options: Mapping[str, Any] | None = None,
               durability: Durability | None = None, create: bool = True
               ) -> tuple[Store, bytes]:
    """The store at ``target`` (a SQLite file path, a ``postgresql://`` URL or a `Store`)
    and its master secret (`master_key`). A key that cannot be had is an error before
    the store is opened, when it can be told then; a key the store refuses closes the
    store again. ``durability`` is given to a store opened from a path or URL (a `Store`
    has its own); ``create=False`` makes neither a store nor a key file."""
    key_path(target, key)  # a PostgreSQL store without a key: at once
    store_options = dict(store_options or {})
    if durability is not None:
        if not isinstance(target, str | os.PathLike):
            raise ConfigurationError("durability: a Store given as the target has "
                                     "its own (give it to the store)")
        store_options["durability"] = _durability(durability)
    if not create and isinstance(target, str | os.PathLike):
        store_options.setdefault("create", False)
    store = open_store(target, **store_options)
    try:
        master, _ = master_key(store, target, key, create=create)
    except BaseException:
        store.close()
        raise
    return store, master


def bind(store: Store, secret: bytes, name: str = "the master key given") -> None:
    """Check ``secret`` against the fingerprint ``store`` records (recording it when the
    store has none yet); a different key is a `ConfigurationError` naming ``name``."""
    mine = Keys(secret).fingerprint
    recorded = store.key_fingerprint(mine)
    if recorded is not None and recorded != mine:
        raise ConfigurationError(
            f"{name} (key id {key_id(mine)}) is not the key of this store (key id "
            f"{key_id(recorded)}): give the store's own key (restore its key file from "
            f"the backup). Only if that key is lost for good, `minlog rekey` gives the "
            f"store a new one, at a cost ({_WHY})")


def _missing(path: Path, target: object, recorded: bytes | None) -> str:
    which = "" if recorded is None else f" (key id {key_id(recorded)})"
    where = target if isinstance(target, str | os.PathLike) and not is_postgres_url(
        target) else "the store"
    return (f"the key file {path} does not exist, and {where} already belongs to a "
            f"key{which}: restore the key file from the backup (or give the right path). "
            f"Only if the key is lost for good, `minlog rekey` gives the store a new one, "
            f"at a cost ({_WHY})")


def rekey_cost(store: Store, horizon_days: int) -> list[str]:
    """What giving ``store`` a new key costs, one line each (for the operator to read
    before ``--force``)."""
    counts = store.counts()
    return [
        f"{counts.pending + counts.in_flight:,} pending entries and {counts.dead:,} dead "
        f"letters were sealed with the old key: they can no longer be opened, and become "
        f"dead letters 'minlog:unreadable' at the next delivery round (their logs are not "
        f"delivered)",
        f"the dedup answer starts afresh for the {horizon_days} days of the horizon: an "
        f"access of those days recorded again is logged again (at most one duplicate per "
        f"employee, citizen and day)",
        "identity codes issued so far can no longer be resolved (`minlog resolve`, "
        "`minlog codes`), and employees are given new codes",
    ]


def rekey(store: Store, path: Path) -> tuple[bool, str]:
    """Give ``store`` the key in the key file ``path`` (made when missing) in place of the
    one it records. Returns whether anything changed, and the new key's id."""
    secret = load_or_create_key(path)
    mine = Keys(secret).fingerprint
    if store.key_fingerprint() == mine:
        return False, key_id(mine)
    store.key_fingerprint(mine, replace=True)
    emit("key_replaced", "the store was given a new master key (key id %s): what the old "
         "key sealed can no longer be opened", key_id(mine), key_id=key_id(mine))
    return True, key_id(mine)
