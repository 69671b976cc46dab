"""Lease owners: the token a claim leases entries under, and whether its owner is gone.

A store instance leases entries under tokens ``"<host>:<pid>:<instance>:<n>"``: this
host's name, this process, the store instance's number in the process, the claim's
number. An owner that is gone can settle nothing, so its leases may be taken back at
once instead of when they run out. Only owners of this host can be judged:

* another process of this host is gone when no process with its id runs;
* this process's own store instance is gone when it was closed (its batch was sent, but
  its acknowledgement could not be written, say);
* the tokens of minlog versions before these (``"<pid>:<n>"`` in SQLite, meaning this
  host; ``"<host>:<pid>:<n>"`` in PostgreSQL) are judged by the process alone.

Tokens of other hosts are never judged: their leases run out (``lease_seconds``).
Processes sharing one SQLite file from separate process namespaces (containers with one
volume) must have distinct host names, as containers do by default.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from typing import Final

__all__ = ["REAP_EVERY", "Owner", "gone"]

#: How often (seconds of the caller's clock) claims look for leases of owners gone.
REAP_EVERY: Final = 5.0

HOST: Final = os.uname().nodename
_numbers = itertools.count(1)
#: The numbers of this process's open store instances.
_open: set[int] = set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


class Owner:
    """The lease tokens of one store instance, and when it next looks for owners gone."""

    def __init__(self) -> None:
        self._leases = itertools.count(1)
        self._reaped_at = float("-inf")
        self.renew()

    def renew(self) -> None:
        """A number (and, after a fork, a process) of its own."""
        self.number = next(_numbers)
        _open.add(self.number)
        self.prefix = f"{HOST}:{os.getpid()}:{self.number}:"

    def token(self) -> str:
        return f"{self.prefix}{next(self._leases)}"

    def reap_due(self, now: float) -> bool:
        """True (and the time noted) when it is time to look for owners gone: at most
        every `REAP_EVERY` seconds of ``now``, which a clock set back also makes due."""
        if self._reaped_at <= now < self._reaped_at + REAP_EVERY:
            return False
        self._reaped_at = now
        return True

    def close(self) -> None:
        """The instance settles nothing more: its leases may be taken back."""
        _open.discard(self.number)


def gone(tokens: Iterable[str]) -> list[str]:
    """The tokens among ``tokens`` whose owners are gone (see the module docstring)."""
    pid = os.getpid()
    alive: dict[int, bool] = {}
    out = []
    for token in tokens:
        parts = token.split(":")
        if len(parts) == 4:
            host, process, number = parts[0], parts[1], parts[2]
        elif len(parts) == 3:
            host, process, number = parts[0], parts[1], ""
        elif len(parts) == 2:
            host, process, number = HOST, parts[0], ""
        else:
            continue
        if host != HOST or not process.isdigit():
            continue
        owner = int(process)
        if owner == pid:
            if number.isdigit() and int(number) not in _open:
                out.append(token)
            continue
        if owner not in alive:
            alive[owner] = _pid_alive(owner)
        if not alive[owner]:
            out.append(token)
    return out
