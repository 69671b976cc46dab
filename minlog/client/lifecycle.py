"""Process lifecycle: live `MinLog` instances stay safe across ``fork`` and at exit.

After a ``fork`` every live instance in the child gets fresh connections, locks and a
(lazily started) worker: nothing of the parent's is used. At interpreter exit each live
instance of this process closes with its bounded ``exit_timeout``: a final flush that
never hangs; what is not delivered stays in the store.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import weakref
from typing import Protocol

__all__ = ["Managed", "forget", "register"]

class Managed(Protocol):
    """What the lifecycle needs of an instance."""

    exit_timeout: float

    @property
    def owner_pid(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    def after_fork(self) -> None: ...

    def close(self, timeout: float | None = None) -> bool: ...


_live: weakref.WeakSet[Managed] = weakref.WeakSet()


def register(instance: Managed) -> None:
    _live.add(instance)


def forget(instance: Managed) -> None:
    _live.discard(instance)


def _after_fork_in_child() -> None:
    for instance in list(_live):
        if not instance.closed:
            instance.after_fork()


def _close_all_at_exit() -> None:
    for instance in list(_live):
        if instance.owner_pid == os.getpid():
            # At exit there is no caller left to tell; what is not sent stays in the store.
            with contextlib.suppress(Exception):
                instance.close(timeout=instance.exit_timeout)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
