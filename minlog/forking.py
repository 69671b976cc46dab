"""Living with ``fork``: what a forked child inherits and must neither use nor let go.

A pre-fork server (gunicorn with preloading, uWSGI) forks a process that may hold open
SQLite connections, PostgreSQL pools and HTTP clients. The child must not use them (they
belong to the parent) and must not let them be collected either: collecting would close
them from the child, and a SQLite connection would run its closing steps on the parent's
files, a PostgreSQL connection would say goodbye on the parent's session.
"""

from __future__ import annotations

__all__ = ["abandon"]

#: What children inherited and must neither use nor let go (see `abandon`).
_abandoned: list[object] = []


def abandon(inherited: object) -> None:
    """Keep ``inherited`` (a connection, pool or HTTP client the parent still uses) alive
    in this forked child for good, unused."""
    _abandoned.append(inherited)
