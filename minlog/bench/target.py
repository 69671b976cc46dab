"""Where `minlog bench` runs: fresh stores on the store the vendor names, never in it.

A **SQLite path** names the disk: the benchmark makes a new folder beside it (inside it,
when the path is a folder), ``.<name>.bench-XXXXXX``, with a fresh file per measurement,
and removes the folder at the end (``keep`` leaves it). The named file itself is never
opened. A **PostgreSQL URL** names the server and database: each measurement gets a
fresh schema ``minlog_bench_<hex>_<n>``, dropped at the end (``keep`` leaves them).

A named store that holds data is refused unless ``force``: an existing, non-empty file at
the SQLite path, or a PostgreSQL schema of that name (``minlog`` by default) with tables
in it. The benchmark would not touch it either way, but naming a live store is most
likely a slip (and a benchmark loads the server a live store runs on).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from minlog.errors import ConfigurationError, StoreError
from minlog.store import is_postgres_url
from minlog.store.base import (
    DEFAULT_DURABILITY,
    POSTGRES_SYNCHRONOUS_COMMIT,
    SQLITE_SYNCHRONOUS,
    Durability,
)

__all__ = ["Places"]

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,50}")


class Places:
    """Fresh stores for one benchmark run (a context manager: cleans up on exit)."""

    def __init__(self, target: str | os.PathLike[str], *, force: bool = False,
                 keep: bool = False, schema: str = "minlog",
                 durability: Durability = DEFAULT_DURABILITY) -> None:
        self.kind: Literal["sqlite", "postgres"] = (
            "postgres" if is_postgres_url(target) else "sqlite")
        self.target = os.fspath(target)
        self.keep = keep
        #: The library's stores' durability, and what it is for the baselines.
        self.durability = durability
        self.synchronous = SQLITE_SYNCHRONOUS[durability]
        self.synchronous_commit = POSTGRES_SYNCHRONOUS_COMMIT[durability]
        self._schemas: list[str] = []
        self._count = 0
        if self.kind == "postgres":
            if not _SCHEMA.fullmatch(schema):
                raise ConfigurationError("schema: must be a lower-case SQL identifier")
            self._stem = f"minlog_bench_{secrets.token_hex(4)}"
            self._refuse_live_schema(schema, force)
            # Scratch files (the naive SQLite baseline, the memory measurement).
            self.folder = Path(tempfile.mkdtemp(prefix="minlog-bench-"))
        else:
            self.folder = self._sqlite_folder(Path(self.target), force)

    # ------------------------------------------------------------------ checks

    @staticmethod
    def _sqlite_folder(path: Path, force: bool) -> Path:
        if path.is_dir():
            parent, stem = path, "minlog"
        else:
            parent, stem = path.parent, path.name
            if path.exists() and path.stat().st_size > 0 and not force:
                raise ConfigurationError(
                    f"{path} exists and holds data: the benchmark never writes it (it runs "
                    "in fresh files in a new folder beside it); name a path that does not "
                    "exist, or give --force to go on")
        if not parent.is_dir():
            raise ConfigurationError(f"{parent} is not a folder: the benchmark runs there")
        return Path(tempfile.mkdtemp(prefix=f".{stem}.bench-", dir=parent))

    def _refuse_live_schema(self, schema: str, force: bool) -> None:
        try:
            import psycopg

            with psycopg.connect(self.target, connect_timeout=10) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
                    [schema]).fetchone()
        except ImportError:
            raise ConfigurationError(
                "a PostgreSQL target needs psycopg: pip install 'minlog[postgres]'") from None
        except Exception as e:
            raise StoreError(f"cannot connect to PostgreSQL: {type(e).__name__}: {e}") from e
        if row and row[0] and not force:
            raise ConfigurationError(
                f"the database holds a minlog store (schema {schema} has {row[0]} tables): "
                "the benchmark never writes it (it runs in fresh schemas "
                f"{self._stem}_*), but it loads this server; give --force to go on")

    # ------------------------------------------------------------------ places

    def describe(self) -> str:
        if self.kind == "postgres":
            return (f"PostgreSQL (durability={self.durability!r}: synchronous_commit="
                    f"{self.synchronous_commit}), fresh schemas {self._stem}_* (dropped at "
                    "the end)")
        what = "kept" if self.keep else "removed at the end"
        return (f"SQLite (durability={self.durability!r}: synchronous={self.synchronous}), "
                f"fresh files in {self.folder} ({what})")

    def store(self, name: str) -> tuple[str, dict[str, Any]]:
        """A fresh store: ``(target, store_options)`` for `MinLog.open`."""
        self._count += 1
        if self.kind == "postgres":
            schema = self.schema()
            return self.target, {"schema": schema, "durability": self.durability}
        return str(self.folder / f"{self._count:02d}-{name}.sqlite"), {
            "durability": self.durability}

    def schema(self) -> str:
        """A fresh PostgreSQL schema name (dropped at the end unless kept)."""
        self._count += 1
        name = f"{self._stem}_{self._count}"
        self._schemas.append(name)
        return name

    def file(self, name: str) -> Path:
        """A fresh file path in the benchmark's folder."""
        self._count += 1
        return self.folder / f"{self._count:02d}-{name}"

    # ------------------------------------------------------------------ cleanup

    def __enter__(self) -> Places:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.keep:
            return
        if self._schemas:
            with contextlib.suppress(Exception):
                import psycopg

                with psycopg.connect(self.target, autocommit=True, connect_timeout=10) as c:
                    for name in self._schemas:
                        c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            self._schemas.clear()
        shutil.rmtree(self.folder, ignore_errors=True)
