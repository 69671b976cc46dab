"""The exit statuses of the ``minlog`` command: one scheme for scripts and alerting.

The table in ``docs/operations.md`` (*Exit statuses*) lists the same codes; a test holds
the two in step. The general codes mean the same in every command; the few
command-specific ones (``resolve``'s, ``bench``'s) are named beside them.

When ``status`` or ``drain`` finds both dead letters and a backlog, it exits
`DEAD_LETTERS`: they need an operator, a backlog may clear by itself (the JSON output
names both).
"""

from __future__ import annotations

from typing import Final

__all__ = ["BACKLOG", "DEAD_LETTERS", "ERROR", "INTERRUPTED", "OK", "SIGTERM", "USAGE",
           "outcome"]

#: Done; for ``status`` and ``drain``: nothing waits for an operator.
OK: Final = 0
#: The command failed (no store at the path, a wrong or missing key, a bad ``--config``,
#: a store error, a port taken), or a destructive command without ``--force`` did
#: nothing (``purge`` inside the horizon, ``rekey``).
ERROR: Final = 1
#: Bad usage: an unknown option, a missing argument, a value of the wrong form
#: (argparse's own status), ``redrive`` without ids or ``--all``.
USAGE: Final = 2
#: ``status``, ``drain``: dead letters wait for an operator (``minlog dead-letters``).
DEAD_LETTERS: Final = 3
#: ``status --max-age S``: the oldest pending log has waited longer than S seconds;
#: ``drain``: logs are left undelivered at ``--timeout`` (the receiver down or slow, a
#: rate limit): they stay in the store and are delivered later.
BACKLOG: Final = 4
#: Stopped by Ctrl-C (SIGINT) outside ``minlog worker`` (which stops gracefully, 0).
INTERRUPTED: Final = 130
#: ``minlog bench`` stopped by SIGTERM (its stores removed).
SIGTERM: Final = 143


def outcome(*, dead: int, backlog: bool) -> int:
    """The exit status of ``status`` and ``drain``: `DEAD_LETTERS` first (they need an
    operator), then `BACKLOG`, else `OK`."""
    if dead:
        return DEAD_LETTERS
    return BACKLOG if backlog else OK
