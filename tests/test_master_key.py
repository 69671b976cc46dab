"""The master key cannot be silently replaced (issue 11, item 1).

A store records the fingerprint of its master key (never the key). Opening it with a
missing or a different key is a `ConfigurationError` naming the key and saying what to
do; a key file is made only for a store that holds nothing yet; a new key for a store
that holds data only by `minlog rekey ... --force`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

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
from minlog.core.sealing import Keys
from minlog.delivery.deliverer import UNREADABLE
from minlog.keyfile import load_or_create_key

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
ORG = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
ANNE = Employee("0101701234", name="Anne Jensen")
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=COPENHAGEN)


def access(citizen: str = "0303303456") -> Access:
    return Access(citizen, ANNE, ORG, "Opslag i Fælles Stamkort", NOW)


def open_log(target: Any, **options: Any) -> MinLog:
    options.setdefault("start_worker", False)
    options.setdefault("clock", FixedClock(NOW.timestamp() + 1))
    options.setdefault("exit_timeout", 0.0)
    return MinLog.open(target, transport=MemoryTransport(), system_name="Cura", **options)


def fingerprint_row(db: Path) -> Any:
    with contextlib.closing(sqlite3.connect(db)) as c:
        row = c.execute("SELECT value FROM _meta WHERE name = 'key_fingerprint'").fetchone()
    return None if row is None else row[0]


run = run_cli


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A SQLite store with one pending entry, made with its default key file."""
    path = tmp_path / "minlog.sqlite"
    with open_log(path) as log:
        assert log.record(access())
    return path


class TestFingerprint:
    def test_the_store_records_a_fingerprint_not_the_key(self, db: Path) -> None:
        """The store holds a digest of its key with a personalisation of its own: not
        the key, nor any key derived from it for dedup, sealing or identity."""
        secret = load_or_create_key(Path(f"{db}.key"), create=False)
        keys = Keys(secret)
        recorded = fingerprint_row(db)
        assert recorded == keys.fingerprint.hex()
        assert keys.fingerprint not in (secret, keys.dedup, keys.seal, keys.subject)
        raw = db.read_bytes() + (Path(f"{db}-wal").read_bytes()
                                 if Path(f"{db}-wal").exists() else b"")
        for secret_form in (secret, secret.hex().encode(), keys.dedup, keys.seal):
            assert secret_form not in raw

    def test_a_new_store_gets_a_new_key_file(self, tmp_path: Path) -> None:
        """Opening a store that does not exist yet makes it and its key file."""
        path = tmp_path / "new" / "minlog.sqlite"
        with open_log(path) as log:
            assert log.record(access())
        assert Path(f"{path}.key").is_file()
        assert fingerprint_row(path) is not None


class TestMissingKey:
    def test_a_missing_key_file_is_an_error_naming_it(self, db: Path) -> None:
        """With the key file gone, opening the store is a ConfigurationError that names
        the key file and says to restore it; no key file is made."""
        key = Path(f"{db}.key")
        key.unlink()
        with pytest.raises(ConfigurationError) as e:
            open_log(db)
        text = str(e.value)
        assert str(key) in text
        assert "restore" in text
        assert "minlog rekey" in text
        assert not key.exists()

    def test_a_missing_key_file_given_by_path_is_an_error(self, db: Path,
                                                          tmp_path: Path) -> None:
        """A mistyped --key path for an existing store is an error, and makes no file."""
        typo = tmp_path / "minlog.sqlite.kye"
        with pytest.raises(ConfigurationError, match="does not exist"):
            open_log(db, key=typo)
        assert not typo.exists()

    def test_the_entries_stay_readable_after_the_refusal(self, db: Path) -> None:
        """Refusing to open without the key changes nothing: with the key restored,
        the pending entry is delivered."""
        key = Path(f"{db}.key")
        saved = key.read_bytes()
        key.unlink()
        with pytest.raises(ConfigurationError):
            open_log(db)
        key.write_bytes(saved)
        t = MemoryTransport()
        with MinLog.open(db, transport=t, system_name="Cura", start_worker=False,
                         clock=FixedClock(NOW.timestamp() + 1)) as log:
            assert log.flush(timeout=10)
        assert len(t.delivered) == 1

    def test_a_store_that_records_no_key_and_holds_nothing_gets_one(
            self, tmp_path: Path) -> None:
        """A store that records no key and holds nothing (nothing to lose: say its key
        file could not be written when it was made) gets a key file when opened."""
        path = tmp_path / "minlog.sqlite"
        open_log(path).close()
        Path(f"{path}.key").unlink()
        with contextlib.closing(sqlite3.connect(path)) as c:
            c.execute("DELETE FROM _meta WHERE name = 'key_fingerprint'")
            c.commit()
        with open_log(path) as log:
            assert log.record(access())
        assert Path(f"{path}.key").is_file()

    def test_an_empty_store_that_records_a_key_is_not_given_another(
            self, tmp_path: Path) -> None:
        """A store that records a key gets no new key file, even when it holds nothing."""
        path = tmp_path / "minlog.sqlite"
        open_log(path).close()
        Path(f"{path}.key").unlink()
        with pytest.raises(ConfigurationError, match="does not exist"):
            open_log(path)


class TestWrongKey:
    def test_a_different_key_file_is_refused(self, db: Path, tmp_path: Path) -> None:
        """Another key file for the store is a ConfigurationError naming that file."""
        other = tmp_path / "other.key"
        other.write_text(OTHER.hex() + "\n")
        with pytest.raises(ConfigurationError) as e:
            open_log(db, key=other)
        assert str(other) in str(e.value)
        assert "not the key" in str(e.value)

    def test_a_different_key_given_as_bytes_is_refused(self, db: Path) -> None:
        """A different secret given as bytes is refused before anything is recorded."""
        with pytest.raises(ConfigurationError, match="not the key"):
            open_log(db, key=OTHER)

    def test_a_store_made_directly_is_checked_too(self, db: Path) -> None:
        """`MinLog(store, ...)` with another key is refused as well."""
        from minlog.store.sqlite import SQLiteStore

        store = SQLiteStore(db)
        try:
            with pytest.raises(ConfigurationError, match="not the key"):
                MinLog(store, MemoryTransport(), system_name="Cura", master_key=OTHER,
                       start_worker=False)
        finally:
            store.close()


class TestStoresMadeBeforeFingerprints:
    def test_the_next_open_with_a_key_records_it(self, db: Path) -> None:
        """A store without a fingerprint gets one at its next open with a key; then
        another key is refused."""
        with contextlib.closing(sqlite3.connect(db)) as c:
            c.execute("DELETE FROM _meta WHERE name = 'key_fingerprint'")
            c.commit()
        assert fingerprint_row(db) is None
        open_log(db).close()
        assert fingerprint_row(db) is not None
        with pytest.raises(ConfigurationError, match="not the key"):
            open_log(db, key=OTHER)

    def test_without_its_key_file_it_is_refused(self, db: Path) -> None:
        """A store without a fingerprint that holds data is not given a new key file."""
        with contextlib.closing(sqlite3.connect(db)) as c:
            c.execute("DELETE FROM _meta WHERE name = 'key_fingerprint'")
            c.commit()
        Path(f"{db}.key").unlink()
        with pytest.raises(ConfigurationError, match="does not exist"):
            open_log(db)
        assert not Path(f"{db}.key").exists()


class TestRekey:
    def test_without_force_it_says_what_it_costs_and_changes_nothing(
            self, db: Path) -> None:
        """`minlog rekey` without --force lists the cost, exits non-zero and changes
        neither the store nor any key file."""
        Path(f"{db}.key").unlink()
        before = fingerprint_row(db)
        status, out, err = run("rekey", str(db))
        assert status != 0
        text = out + err
        assert "--force" in text
        assert "1 pending" in text
        assert UNREADABLE in text
        assert "resolve" in text
        assert fingerprint_row(db) == before
        assert not Path(f"{db}.key").exists()

    def test_with_force_the_store_takes_a_new_key(self, db: Path) -> None:
        """`minlog rekey --force` makes a new key file and records its fingerprint;
        the store then opens with it, and what the old key sealed becomes
        `minlog:unreadable` dead letters at the next delivery round."""
        Path(f"{db}.key").unlink()
        status, out, _ = run("rekey", str(db), "--force")
        assert status == 0, out
        assert Path(f"{db}.key").is_file()
        t = MemoryTransport()
        with MinLog.open(db, transport=t, system_name="Cura", start_worker=False,
                         clock=FixedClock(NOW.timestamp() + 1)) as log:
            assert not log.flush(timeout=10)
            assert [d.code for d in log.dead_letters()] == [UNREADABLE]
            assert log.record(access("0404404567"))
        assert [r.person_identifier for r in t.delivered] == ["0404404567"]

    def test_with_the_store_s_own_key_it_does_nothing(self, db: Path) -> None:
        """Rekeying with the key the store already has changes nothing."""
        before = fingerprint_row(db)
        status, out, _ = run("rekey", str(db), "--force")
        assert status == 0
        assert "already" in out
        assert fingerprint_row(db) == before

    def test_a_new_key_file_elsewhere(self, db: Path, tmp_path: Path) -> None:
        """--new-key names where the new key file goes."""
        new = tmp_path / "keys" / "new.key"
        new.parent.mkdir()
        assert run("rekey", str(db), "--new-key", str(new), "--force")[0] == 0
        open_log(db, key=new).close()
        with pytest.raises(ConfigurationError, match="not the key"):
            open_log(db)


class TestPostgres:
    def test_a_host_without_a_key_is_refused(self, pg_schema: str) -> None:
        """A PostgreSQL store needs the key given: no host makes a key of its own."""
        from conftest import POSTGRES_URL

        with pytest.raises(ConfigurationError, match="key"):
            open_log(POSTGRES_URL, store_options={"schema": pg_schema})

    def test_a_host_with_another_key_is_refused(self, pg_schema: str,
                                                tmp_path: Path) -> None:
        """A second host started with a different key is refused by the fingerprint."""
        from conftest import POSTGRES_URL

        with open_log(POSTGRES_URL, key=KEY, store_options={"schema": pg_schema}) as log:
            assert log.record(access())
        with pytest.raises(ConfigurationError, match="not the key"):
            open_log(POSTGRES_URL, key=OTHER, store_options={"schema": pg_schema})
        missing = tmp_path / "host2.key"
        with pytest.raises(ConfigurationError, match="does not exist"):
            open_log(POSTGRES_URL, key=missing, store_options={"schema": pg_schema})
        assert not missing.exists()
        open_log(POSTGRES_URL, key=KEY, store_options={"schema": pg_schema}).close()
