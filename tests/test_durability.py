"""Durability is a setting, not a word (issue 11, item 4).

``durability="process"`` survives a crash of the process (kill -9); ``"power"`` (the
default) also survives a power loss or a crash of the operating system. On SQLite (WAL)
they are ``synchronous=NORMAL`` and ``FULL``; on PostgreSQL ``synchronous_commit`` off
and on. What each costs is measured in ``benchmarks/test_bench_durability.py``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from minlog import (
    Access,
    ConfigurationError,
    Employee,
    MemoryTransport,
    MinLog,
    Organisation,
)
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN
from minlog.store.sqlite import SQLiteStore

KEY = bytes(range(32))
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=COPENHAGEN)


def open_log(target: Any, **options: Any) -> MinLog:
    return MinLog.open(target, transport=MemoryTransport(), system_name="Cura", key=KEY,
                       start_worker=False, exit_timeout=0.0,
                       clock=FixedClock(NOW.timestamp() + 1), **options)


def synchronous(log: MinLog) -> int:
    """SQLite's ``synchronous`` on the store's connection (1 NORMAL, 2 FULL)."""
    store = log.store
    assert isinstance(store, SQLiteStore)
    return int(store._read(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]))


class TestSQLite:
    def test_the_default_survives_a_power_loss(self, tmp_path: Path) -> None:
        """By default a commit is synced to disk before record() returns (FULL)."""
        with open_log(tmp_path / "m.sqlite") as log:
            assert synchronous(log) == 2

    @pytest.mark.parametrize(("level", "expected"), [("process", 1), ("power", 2)])
    def test_each_level_is_sqlite_s_setting(self, tmp_path: Path, level: str,
                                            expected: int) -> None:
        """"process" is synchronous=NORMAL, "power" is FULL, on every connection."""
        with open_log(tmp_path / "m.sqlite", durability=level) as log:
            assert synchronous(log) == expected
            assert log.record(Access("0303303456", Employee("0101701234", name="A"),
                                     Organisation("380000000000001"), "Opslag", NOW))
            log.store.after_fork()  # type: ignore[attr-defined]  # a fresh connection
            assert synchronous(log) == expected

    @pytest.mark.parametrize("level", ["NORMAL", "fast", "", "Power", 2])
    def test_anything_else_is_refused(self, tmp_path: Path, level: object) -> None:
        """Another value is a ConfigurationError naming the option; no store is made."""
        with pytest.raises(ConfigurationError, match="durability"):
            open_log(tmp_path / "m.sqlite", durability=level)
        assert not (tmp_path / "m.sqlite").exists()

    def test_a_store_given_as_an_object_keeps_its_own(self, tmp_path: Path) -> None:
        """With a Store object, durability belongs to the store: giving it to open is an
        error."""
        store = SQLiteStore(tmp_path / "m.sqlite", durability="process")
        try:
            with pytest.raises(ConfigurationError, match="durability"):
                open_log(store, durability="power")
        finally:
            store.close()


class TestPostgres:
    @pytest.mark.parametrize(("level", "expected"), [("process", "off"), ("power", "on"),
                                                     (None, "on")])
    def test_each_level_is_synchronous_commit(self, pg_schema: str, level: str | None,
                                              expected: str) -> None:
        """"process" commits with synchronous_commit off, "power" (the default) on."""
        from conftest import POSTGRES_URL

        options: dict[str, Any] = {} if level is None else {"durability": level}
        with open_log(POSTGRES_URL, store_options={"schema": pg_schema}, **options) as log:
            got = log.store._run(  # type: ignore[attr-defined]
                lambda c: c.execute("SHOW synchronous_commit").fetchone()[0])
            assert got == expected
