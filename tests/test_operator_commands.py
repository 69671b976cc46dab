"""The operator's commands cannot lose data by a slip (issue 11, items 2 and 3).

Commands that inspect (``status``, ``dead-letters``, ``resolve``, ``codes``) create
nothing and change nothing: a mistyped path is an error with a non-zero exit, not an
empty store reported as zeros. No command makes a store or a key file. ``purge`` takes
positive days only, and inside the dedup horizon only with ``--force`` and after saying
what it costs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli

from minlog import Access, Employee, MemoryTransport, MinLog, Organisation
from minlog.cli import main as cli
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN

ORG = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
ANNE = Employee("0101701234", name="Anne Jensen")
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=COPENHAGEN)

INSPECTING = [
    ["status"], ["status", "--json"], ["dead-letters"],
    ["resolve", "--organisation", ORG.id, "K7Q4-9MX2"],
    ["codes", "--organisation", ORG.id],
]
WRITING = [["redrive", "--all"], ["purge"], ["rekey"]]


run = run_cli


def tree(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` with a digest of its content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A closed SQLite store with one pending entry and its key file."""
    path = tmp_path / "store" / "minlog.sqlite"
    with MinLog.open(path, transport=MemoryTransport(), system_name="Cura",
                     start_worker=False, exit_timeout=0.0,
                     clock=FixedClock(NOW.timestamp() + 1)) as log:
        assert log.record(Access("0303303456", ANNE, ORG, "Opslag", NOW))
    return path


class TestMistypedPaths:
    @pytest.mark.parametrize("command", INSPECTING + WRITING, ids=lambda c: " ".join(c))
    def test_a_path_in_a_missing_folder_creates_nothing(self, tmp_path: Path,
                                                        command: list[str]) -> None:
        """A store path in a folder that does not exist is an error (non-zero exit,
        saying there is no store); no folder, database or key file is made."""
        typo = tmp_path / "minlgo" / "minlog.sqlite"
        status, _, err = run(command[0], str(typo), *command[1:])
        assert status != 0
        assert "no SQLite store" in err
        assert not (tmp_path / "minlgo").exists()
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize("command", INSPECTING + WRITING, ids=lambda c: " ".join(c))
    def test_a_mistyped_file_beside_a_store_creates_nothing(self, db: Path,
                                                            command: list[str]) -> None:
        """A mistyped file name in the store's folder is an error; the folder is left
        as it was."""
        before = tree(db.parent)
        status, _, err = run(command[0], str(db.parent / "minlog.sqlit"), *command[1:])
        assert status != 0
        assert "no SQLite store" in err
        assert tree(db.parent) == before

    def test_a_file_that_is_no_store_is_refused_and_left_alone(self, tmp_path: Path
                                                               ) -> None:
        """Pointing a command at a file that holds no minlog store is an error; the file
        is not turned into a store."""
        other = tmp_path / "notes.sqlite"
        with contextlib.closing(sqlite3.connect(other)) as c:
            c.execute("CREATE TABLE notes (text)")
        before = tree(tmp_path)
        for command in (["status"], ["purge"]):
            status, _, err = run(command[0], str(other), *command[1:])
            assert status != 0
            assert "no minlog store" in err
        assert tree(tmp_path) == before


class TestInspectingChangesNothing:
    def test_inspecting_leaves_the_store_as_it_was(self, db: Path) -> None:
        """status, dead-letters, resolve and codes leave the database and its key file
        byte for byte as they were."""
        key = Path(f"{db}.key")
        before = (db.read_bytes(), key.read_bytes())
        for command in INSPECTING:
            _, _, err = run(command[0], str(db), *command[1:])
            assert "Error" not in err, (command, err)  # it ran (resolve: no such code)
        assert (db.read_bytes(), key.read_bytes()) == before

    def test_a_missing_key_is_an_error_and_not_made(self, db: Path) -> None:
        """Without its key file a store cannot be inspected, and no key file is made."""
        Path(f"{db}.key").unlink()
        for command in INSPECTING:
            status, _, err = run(command[0], str(db), *command[1:])
            assert status != 0
            assert "does not exist" in err
        assert not Path(f"{db}.key").exists()

    def test_status_reports_the_store(self, db: Path) -> None:
        """On the right path, status reports the pending entry."""
        status, out, _ = run("status", str(db))
        assert status == 0
        assert "pending:            1" in out


class TestPostgres:
    def test_a_mistyped_schema_creates_nothing(self, pg_schema: str, tmp_path: Path) -> None:
        """status on a PostgreSQL schema that holds no store is an error; the schema is
        not created."""
        import psycopg
        from conftest import POSTGRES_URL

        key = tmp_path / "k"
        key.write_text(bytes(32).hex())
        status, _, err = run("status", POSTGRES_URL, "--schema", pg_schema, "--key", str(key))
        assert status != 0
        assert "holds no minlog store" in err
        with psycopg.connect(POSTGRES_URL) as conn:
            assert conn.execute("SELECT to_regnamespace(%s)", [pg_schema]).fetchone() == (None,)


def seen_days(db: Path) -> dict[int, int]:
    """Seen-set keys per day, read straight from the file."""
    with contextlib.closing(sqlite3.connect(db)) as c:
        return dict(c.execute("SELECT day, COUNT(*) FROM seen GROUP BY day").fetchall())


@pytest.fixture
def recent(tmp_path: Path) -> tuple[Path, int]:
    """A store whose seen-set holds today, yesterday and five days ago (by the system's
    clock, which the command uses too); and today's day number."""
    path = tmp_path / "minlog.sqlite"
    now = dt.datetime.now(dt.UTC)
    with MinLog.open(path, transport=MemoryTransport(), system_name="Cura",
                     start_worker=False, exit_timeout=0.0) as log:
        for back in (0, 1, 5):
            assert log.record(Access("0303303456", ANNE, ORG, "Opslag",
                                     now - dt.timedelta(days=back)))
        today = log.today()
    return path, today


class TestPurge:
    @pytest.mark.parametrize("days", ["0", "-1", "-35", "x"])
    def test_keep_days_must_be_a_positive_number(self, recent: tuple[Path, int],
                                                 days: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
        """--keep-days 0, a negative number or no number is refused (exit 2); nothing
        is purged."""
        db, _ = recent
        before = seen_days(db)
        with pytest.raises(SystemExit) as e:
            cli.main(["purge", str(db), f"--keep-days={days}"])
        assert e.value.code == 2
        assert "--keep-days" in capsys.readouterr().err
        assert seen_days(db) == before

    def test_inside_the_horizon_it_needs_force_and_says_the_cost(
            self, recent: tuple[Path, int]) -> None:
        """Purging days inside the dedup horizon is refused without --force, with the
        days whose duplicates would be accepted again; nothing is purged."""
        db, today = recent
        before = seen_days(db)
        status, out, _ = run("purge", str(db), "--keep-days", "3")
        assert status != 0
        assert "--force" in out
        assert "horizon of 35 days" in out
        first = dt.date.fromordinal(today - 34).isoformat()
        last = dt.date.fromordinal(today - 3).isoformat()
        assert f"{first} to {last}" in out
        assert "accepted again" in out
        assert seen_days(db) == before

    def test_with_force_it_purges_and_says_the_cost(self, recent: tuple[Path, int]) -> None:
        """With --force the days before the kept ones go, and the cost is printed."""
        db, today = recent
        status, out, _ = run("purge", str(db), "--keep-days", "3", "--force")
        assert status == 0
        assert "accepted again" in out
        assert "1 seen-set keys forgotten" in out
        assert sorted(seen_days(db)) == [today - 1, today]

    def test_beyond_the_horizon_it_needs_no_force(self, recent: tuple[Path, int]) -> None:
        """Without --keep-days (the horizon) or with more days, purge keeps every day
        of the horizon and needs no --force."""
        db, _ = recent
        before = seen_days(db)
        assert run("purge", str(db))[0] == 0
        assert run("purge", str(db), "--keep-days", "40")[0] == 0
        assert seen_days(db) == before

    def test_the_command_does_not_change_the_horizon(self, recent: tuple[Path, int]) -> None:
        """The store's horizon is what the application asked for: a command leaves it."""
        db, _ = recent
        with contextlib.closing(sqlite3.connect(db)) as c:
            c.execute("UPDATE _meta SET value = 10 WHERE name = 'horizon_days'")
            c.commit()
        status, out, _ = run("purge", str(db), "--keep-days", "5")
        assert status != 0
        assert "horizon of 10 days" in out
        with contextlib.closing(sqlite3.connect(db)) as c:
            assert c.execute("SELECT value FROM _meta WHERE name = 'horizon_days'"
                             ).fetchone() == (10,)


class TestPostgresStatus:
    def test_status_reads_a_postgres_store_read_only(self, pg_schema: str,
                                                    tmp_path: Path) -> None:
        """status and dead-letters read a PostgreSQL store (in read-only transactions)
        named by --schema; a wrong key is refused."""
        from conftest import POSTGRES_URL

        key = tmp_path / "k"
        key.write_text(bytes(range(32)).hex())
        with MinLog.open(POSTGRES_URL, transport=MemoryTransport(), system_name="Cura",
                         key=key, start_worker=False, exit_timeout=0.0,
                         store_options={"schema": pg_schema},
                         clock=FixedClock(NOW.timestamp() + 1)) as log:
            assert log.record(Access("0303303456", ANNE, ORG, "Opslag", NOW))
        status, out, err = run("status", POSTGRES_URL, "--schema", pg_schema, "--key", str(key))
        assert status == 0, err
        assert "pending:            1" in out
        assert run("dead-letters", POSTGRES_URL, "--schema", pg_schema, "--key",
                   str(key))[0] == 0
        other = tmp_path / "other"
        other.write_text(bytes(32).hex())
        status, _, err = run("status", POSTGRES_URL, "--schema", pg_schema, "--key", str(other))
        assert status != 0
        assert "not the key" in err
