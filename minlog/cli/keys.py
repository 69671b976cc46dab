"""The key command of ``minlog``: give a store whose master key is lost a new one.

``minlog rekey STORE [--new-key FILE] --force`` makes ``FILE`` (default ``<store>.key``
beside a SQLite file; made when missing) the store's key, in place of the one the store
records. It is the only way a store that holds data gets a new key
(`minlog.client.keying`), and it costs what it prints without ``--force``. Restoring the
old key file from the backup costs nothing: do that when you can.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TextIO

from minlog.cli import exits
from minlog.cli.console import write_json
from minlog.client import keying
from minlog.core.ledger import DEFAULT_HORIZON_DAYS
from minlog.core.sealing import Keys, key_id
from minlog.keyfile import load_or_create_key
from minlog.store import open_store

__all__ = ["add_commands", "cmd_rekey"]


def cmd_rekey(args: argparse.Namespace, out: TextIO) -> int:
    """Give a store a new master key, when its own key is lost for good. Without --force
    it says what that costs and changes nothing; restoring the old key file from the
    backup costs nothing. The new key file (made when missing, mode 0600) must be backed
    up at once. Exit status: 0 done (or the key is the store's already), 1 not done."""
    path = keying.key_path(args.store, args.key)
    assert path is not None  # the key is a path here, never bytes
    from minlog.cli.main import store_options  # the one way commands name a store

    say = sys.stderr if args.json else out
    answer: dict[str, Any] = {"done": False, "already": False, "key_file": str(path),
                              "key_id": None, "cost": []}
    store = open_store(args.store, **store_options(args, create=False))
    try:
        recorded = store.key_fingerprint()
        if path.exists() and recorded == Keys(load_or_create_key(path, create=False)
                                              ).fingerprint:
            say.write(f"{path} holds the store's key already (key id {key_id(recorded)}): "
                      "nothing to do\n")
            answer.update(done=True, already=True, key_id=key_id(recorded))
        elif not args.force:
            horizon = store.horizon_days(0) or DEFAULT_HORIZON_DAYS
            answer["cost"] = cost = keying.rekey_cost(store, horizon)
            say.write(f"minlog rekey gives {args.store} a new master key ({path}). "
                      "What the old key protects is lost:\n")
            for line in cost:
                say.write(f"  - {line}\n")
            say.write("Restore the old key file from the backup instead, if you can. To go "
                      "ahead, run the command again with --force.\n")
        else:
            _, new = keying.rekey(store, path)
            answer.update(done=True, key_id=new)
            say.write(f"{args.store} now belongs to the key in {path} (key id {new}). Back "
                      "that file up now, apart from the database backups.\n")
    finally:
        store.close()
    if args.json:
        write_json(out, answer)
    return exits.OK if answer["done"] else exits.ERROR


def add_commands(store_parser: Callable[[str, str, str | None], argparse.ArgumentParser]
                 ) -> None:
    """Add ``rekey`` with ``store_parser(name, help, description)``, the parser factory of
    `minlog.cli.main` for commands that open a store."""
    rekey = store_parser("rekey", "give a store whose key is lost a new key (destructive)",
                         cmd_rekey.__doc__)
    rekey.add_argument("--new-key", dest="key",
                       help="the new key file, made when missing (the same as --key)")
    rekey.add_argument("--force", action="store_true",
                       help="do it (without: say what it costs, change nothing)")
    rekey.set_defaults(func=cmd_rekey)
