"""Living with ``fork``: no thread of ours is inside a store when the process forks, and
what a forked child inherits it neither uses nor lets go.

A pre-fork server (gunicorn with preloading, uWSGI) forks whenever it likes, while the
delivery worker or a recording thread may be inside SQLite or psycopg. Only the forking
thread lives on in the child: a lock or a transaction that another thread held at that
moment stays held there for good (SQLite's own mutexes, and its record of the file locks
the parent's connection held, which makes every write of the child wait for a lock that
nobody will release). So every call into a store passes through one gate (`passage`):

* just before a fork (``os.register_at_fork``), the hooks registered with `at_fork` take
  the locks they name (the facade's, the group commit's, the worker's, ...), then the gate
  closes: threads that want in wait, and the fork waits until every thread inside has
  come out (at most `FORK_WAIT` seconds);
* just after it, the parent opens the gate again and lets go of the locks; the child gets
  an open gate of its own, and its hooks give every live instance fresh connections.

The child must not use what it inherited (the parent's connections, pools and HTTP
clients), and must not let it be collected either: collecting would close it from the
child, and a SQLite connection would run its closing steps on the parent's files, a
PostgreSQL connection would say goodbye on the parent's session. `abandon` keeps it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Final

from minlog.events import emit

__all__ = ["FORK_WAIT", "abandon", "at_fork", "passage"]

#: How long a fork waits for minlog's threads to come out of the stores.
FORK_WAIT: Final = 60.0

#: What children inherited and must neither use nor let go (see `abandon`).
_abandoned: list[object] = []


def abandon(inherited: object) -> None:
    """Keep ``inherited`` (a connection, pool or HTTP client the parent still uses) alive
    in this forked child for good, unused."""
    _abandoned.append(inherited)


class _Gate:
    """Counts the threads inside the stores; closed around a fork. A thread already
    inside may enter again (store calls nest)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._inside = 0
        self._closed = False
        self._depth = threading.local()

    def __enter__(self) -> None:
        local = self._depth
        depth: int = getattr(local, "n", 0)
        if depth == 0:
            with self._cond:
                while self._closed:
                    self._cond.wait()
                self._inside += 1
        local.n = depth + 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        local = self._depth
        local.n -= 1
        if local.n == 0:
            with self._cond:
                self._inside -= 1
                if self._closed and self._inside <= 1:
                    self._cond.notify_all()

    def close(self, timeout: float) -> None:
        """Let no thread in, and wait until the threads inside have come out (all but
        this one, should it be inside)."""
        own = 1 if getattr(self._depth, "n", 0) else 0
        with self._cond:
            self._closed = True
            if not self._cond.wait_for(lambda: self._inside <= own, timeout):
                emit("fork_waited", "forking while a minlog store call has run for %.0f s: "
                     "the child may find that store locked", timeout, seconds=timeout)

    def open(self) -> None:
        with self._cond:
            self._closed = False
            self._cond.notify_all()

    def reset_in_child(self) -> None:
        """In a forked child: the forking thread is the only one left."""
        self._cond = threading.Condition(threading.Lock())
        self._inside = 1 if getattr(self._depth, "n", 0) else 0
        self._closed = False


_gate = _Gate()


def passage() -> _Gate:
    """The gate every call into a store passes (``with forking.passage(): ...``), so that
    no thread is inside a store at the moment of a fork."""
    return _gate


_Hook = Callable[[], None]
_hooks: list[tuple[_Hook, _Hook, _Hook]] = []


def at_fork(*, before: _Hook, after_in_parent: _Hook, after_in_child: _Hook) -> None:
    """Run ``before`` just before a fork (before the gate closes: take locks here),
    ``after_in_parent`` just after it in the parent (after the gate opened) and
    ``after_in_child`` in the child (with an open gate of its own)."""
    _hooks.append((before, after_in_parent, after_in_child))


def _before() -> None:
    for before, _, _ in _hooks:
        before()
    _gate.close(FORK_WAIT)


def _after_in_parent() -> None:
    _gate.open()
    for _, after, _ in reversed(_hooks):
        after()


def _after_in_child() -> None:
    _gate.reset_in_child()
    for _, _, after in _hooks:
        after()


os.register_at_fork(before=_before, after_in_parent=_after_in_parent,
                    after_in_child=_after_in_child)
