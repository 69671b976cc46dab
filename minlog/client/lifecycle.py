"""Process lifecycle: live `MinLog` instances stay safe across ``fork`` and at exit.

Just before a ``fork`` the locks of every live instance of this process are taken (so no
thread holds one at the moment of the fork), and then no thread is inside a store
(`minlog.forking`); just after it the parent lets go of them, and every live instance in
the child gets fresh connections, locks and a (lazily started) worker: nothing of the
parent's is used. At interpreter exit each live
instance of this process closes with its bounded ``exit_timeout``: a final flush that
never hangs; what is not delivered stays in the store.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from typing import Protocol

from minlog import forking

__all__ = ["Managed", "forget", "register"]

class Managed(Protocol):
    """What the lifecycle needs of an instance."""

    exit_timeout: float

    @property
    def owner_pid(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    def fork_locks(self) -> list[threading.Lock | threading.RLock]:
        """The locks to hold across a fork, in the order to take them (none may be taken
        while another of them is held elsewhere in the code)."""
        ...

    def after_fork(self) -> None: ...

    def close(self, timeout: float | None = None) -> bool: ...


_live: weakref.WeakSet[Managed] = weakref.WeakSet()
#: The locks taken before the fork under way, in the order they were taken.
_held: list[threading.Lock | threading.RLock] = []


def register(instance: Managed) -> None:
    _live.add(instance)


def forget(instance: Managed) -> None:
    _live.discard(instance)


def _hold_locks() -> None:
    pid = os.getpid()
    for instance in list(_live):
        if not instance.closed and instance.owner_pid == pid:
            for lock in instance.fork_locks():
                lock.acquire()
                _held.append(lock)


def _let_go() -> None:
    while _held:
        _held.pop().release()


def _after_fork_in_child() -> None:
    _let_go()
    for instance in list(_live):
        if not instance.closed:
            instance.after_fork()


def _close_all_at_exit() -> None:
    for instance in list(_live):
        if instance.owner_pid == os.getpid():
            # At exit there is no caller left to tell; what is not sent stays in the store.
            with contextlib.suppress(Exception):
                instance.close(timeout=instance.exit_timeout)


forking.at_fork(before=_hold_locks, after_in_parent=_let_go,
                after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
