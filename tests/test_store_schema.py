"""The SQLite store's schema through sqlite-utils: introspection holds a file to the
layout of its version, and tells an inspecting command what a file holds."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import pytest

import minlog
from minlog.store.base import NewEntry
from minlog.store.sqlite import SQLiteStore
from minlog.store.sqlite_schema import LAYOUT, SCHEMA_VERSION


class TestCheck:
    def test_a_table_altered_by_hand_is_refused_by_name(self, tmp_path: Path) -> None:
        """A store whose outbox lost its tenant column is refused, naming table and column,
        when it is opened (not later, deep inside a query)."""
        path = tmp_path / "m.sqlite"
        SQLiteStore(path).close()
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("ALTER TABLE outbox DROP COLUMN tenant")
            conn.commit()
        with pytest.raises(minlog.StoreError, match=r"table outbox .*missing: tenant"):
            SQLiteStore(path)

    def test_a_missing_index_is_refused(self, tmp_path: Path) -> None:
        """An index the store relies on that was dropped is named."""
        path = tmp_path / "m.sqlite"
        SQLiteStore(path).close()
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("DROP INDEX aliases_subject")
            conn.commit()
        with pytest.raises(minlog.StoreError, match="aliases_subject"):
            SQLiteStore(path)


class TestDescribe:
    def test_what_a_file_holds(self, tmp_path: Path) -> None:
        """describe() gives the schema version, every table with its rows and columns, and
        SQLite's journal mode, without writing."""
        store = SQLiteStore(tmp_path / "m.sqlite")
        store.append([NewEntry(1, b"k" * 16, b"p"), NewEntry(1, b"l" * 16, b"q")], 0.0)
        d = store.describe()
        store.close()
        assert d.schema_version == SCHEMA_VERSION
        assert d.tables["seen"] == 2
        assert d.tables["outbox"] == 2
        assert d.tables["dead"] == 0
        assert set(LAYOUT) <= set(d.tables)
        assert d.columns["outbox"] == LAYOUT["outbox"][0]
        assert d.journal_mode == "wal"
        assert d.size > 0


def _open_fds(path: Path) -> int:
    """How many of this process's file descriptors point at ``path`` (Linux)."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            if Path(os.readlink(fd)) == path:
                count += 1
    return count


class TestRefusedFiles:
    @pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
    def test_a_refused_file_is_left_closed(self, tmp_path: Path) -> None:
        """A file the store refuses on opening leaves no connection (no descriptor) open."""
        path = tmp_path / "m.sqlite"
        SQLiteStore(path).close()
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("DROP INDEX aliases_subject")
            conn.commit()
        assert _open_fds(path) == 0
        with pytest.raises(minlog.StoreError):
            SQLiteStore(path)
        assert _open_fds(path) == 0
