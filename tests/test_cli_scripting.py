"""The ``minlog`` command for scripts and alerting: one JSON document per command with
``--json``, exit statuses from one table (`minlog.cli.exits`, docs/operations.md),
``--version``, ``python -m minlog``, ``-v`` log events on standard error and progress
lines that redraw in place only on a terminal."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from minlog import Access, Employee, MemoryTransport, MinLog, Organisation
from minlog.cli import exits
from minlog.cli.console import EventFormatter, Progress
from minlog.core.clock import FixedClock
from minlog.testing import FakeNSP, Fault, make_test_certificate

ROOT = Path(__file__).resolve().parent.parent
CVR = "12345678"
ORG = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
CITIZEN = "0303303456"

run = run_cli


def fill(db: Path, n: int, *, ago: float = 30.0) -> None:
    """Record ``n`` first-of-day logs in a new SQLite store (accepted ``ago`` seconds
    before now, by the system clock the commands use)."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ago)
    with MinLog.open(db, transport=MemoryTransport(), system_name="Cura",
                     start_worker=False, exit_timeout=0.0, rate_limit=None,
                     clock=FixedClock(now.timestamp() + 1)) as log:
        log.record_many([Access(CITIZEN, Employee(f"01017{i:05d}", name=f"E{i}"), ORG,
                                "Opslag", now) for i in range(n)])


def bury_all(db: Path) -> None:
    """Deliver the outbox to a receiver that refuses everything: all dead letters."""
    with MinLog.open(db, transport=MemoryTransport(reject=lambda r: "E9"), system_name="Cura",
                     start_worker=False, exit_timeout=0.0, rate_limit=None) as log:
        log.flush(timeout=10)


def transport_toml(folder: Path, nsp: FakeNSP) -> Path:
    """A ``--config`` file for FakeNSP, with a test certificate made here."""
    p12, password = make_test_certificate(CVR, "Testkommune")
    (folder / "system.p12").write_bytes(p12)
    (folder / "p12.password").write_bytes(password)
    path = folder / "minlog.toml"
    path.write_text("[minlog2]\n"
                    f'service_url = "{nsp.service_url}"\nsts_url = "{nsp.sts_url}"\n'
                    'pkcs12 = "system.p12"\npassword_file = "p12.password"\n'
                    f'cvr = "{CVR}"\nsystem_name = "Cura"\ncare_provider_name = "Testkommune"\n'
                    "read_timeout = 10\n")
    return path


def one_json(out: str) -> dict[str, object]:
    """Standard output holds exactly one JSON document, on one line."""
    assert out.count("\n") == 1, out
    assert out.endswith("\n"), out
    doc = json.loads(out)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "minlog.sqlite"
    fill(path, 3)
    return path


class TestJson:
    def test_status(self, db: Path) -> None:
        status, out, _ = run("status", str(db), "--json")
        doc = one_json(out)
        assert status == exits.OK
        assert set(doc) == {"pending", "in_flight", "dead", "oldest_pending_age", "max_age",
                            "problems", "tenants"}
        assert (doc["pending"], doc["in_flight"], doc["dead"], doc["problems"]) == (
            3, 0, 0, [])
        assert doc["tenants"][""]["pending"] == 3  # a single municipality: one row, ""

    def test_dead_letters_redrive_and_never_a_cpr_number(self, db: Path) -> None:
        bury_all(db)
        status, out, _ = run("dead-letters", str(db), "--json")
        letters = one_json(out)["dead_letters"]
        assert status == exits.OK
        assert isinstance(letters, list)
        assert len(letters) == 3
        assert set(letters[0]) == {"id", "died_at", "code", "text", "attempts", "readable",
                                   "activity", "at"}
        assert (letters[0]["code"], letters[0]["activity"], letters[0]["readable"]) == (
            "E9", "Opslag", True)
        assert CITIZEN not in out
        assert "0101700000" not in out
        status, out, _ = run("redrive", str(db), "--all", "--json")
        assert (status, one_json(out)) == (exits.OK, {"redriven": 3})

    def test_purge_done_and_refused(self, db: Path) -> None:
        status, out, _ = run("purge", str(db), "--json")
        doc = one_json(out)
        assert status == exits.OK
        assert set(doc) == {"purged", "forgotten", "keep_days", "horizon_days",
                            "inside_horizon"}
        assert (doc["purged"], doc["inside_horizon"]) == (True, None)
        status, out, err = run("purge", str(db), "--keep-days", "1", "--json")
        doc = one_json(out)
        assert status == exits.ERROR
        assert (doc["purged"], doc["forgotten"]) == (False, 0)
        assert isinstance(doc["inside_horizon"], dict)
        assert "--force" in err  # the explanation goes to standard error

    def test_rekey_without_force(self, db: Path) -> None:
        Path(f"{db}.key").rename(db.parent / "lost.key")
        status, out, err = run("rekey", str(db), "--json")
        doc = one_json(out)
        assert status == exits.ERROR
        assert set(doc) == {"done", "already", "key_file", "key_id", "cost"}
        assert doc["done"] is False
        assert doc["cost"]
        assert "--force" in err
        assert not Path(f"{db}.key").exists()

    def test_resolve_and_codes(self, db: Path) -> None:
        status, out, _ = run("resolve", str(db), "--organisation", ORG.id, "--json", "K7Q4-9MX2")
        assert status in (1, 3)  # no such code, or mistyped: either way one document
        assert one_json(out)["status"] in ("unknown", "mistyped")
        status, out, _ = run("codes", str(db), "--organisation", ORG.id, "--json")
        assert status == exits.OK
        assert json.loads(out)["codes"] == []

    def test_an_error_is_a_json_document_too(self, tmp_path: Path) -> None:
        status, out, err = run("status", str(tmp_path / "missing.sqlite"), "--json")
        assert status == exits.ERROR
        assert one_json(out)["error"]["type"] == "StoreError"  # type: ignore[index]
        assert "no SQLite store" in err

    def test_demo(self, tmp_path: Path) -> None:
        status, out, err = run("demo", "--memory", "--employees", "20", "--citizens", "60",
                               "--dir", str(tmp_path), "--json")
        doc = one_json(out)
        assert status == exits.OK
        assert doc["delivered_all"] is True
        assert doc["delivered"] == doc["first_of_day"]
        assert "morning peak" in err
        assert "\r" not in err  # standard error is no terminal here

    def test_drain(self, db: Path, tmp_path: Path) -> None:
        with FakeNSP(cvr=CVR) as nsp:
            status, out, _ = run("drain", str(db), "--config",
                                 str(transport_toml(tmp_path, nsp)), "--json",
                                 "--rate-limit", "none")
            assert len(nsp.received) == 3
        doc = one_json(out)
        assert status == exits.OK
        assert doc == {"delivered": 3, "pending": 0, "in_flight": 0, "dead": 0,
                       "last_error": None, "complete": True}


class TestExitStatuses:
    def test_status_dead_letters_and_backlog(self, tmp_path: Path) -> None:
        """status: 0 healthy; 4 when the oldest pending log is older than --max-age;
        3 when dead letters wait (also when both)."""
        db = tmp_path / "minlog.sqlite"
        fill(db, 2, ago=7200)
        assert run("status", str(db))[0] == exits.OK
        assert run("status", str(db), "--max-age", "86400")[0] == exits.OK
        status, out, _ = run("status", str(db), "--max-age", "3600", "--json")
        assert (status, one_json(out)["problems"]) == (exits.BACKLOG, ["backlog"])
        status, out, _ = run("status", str(db), "--max-age", "3600")
        assert "longer than 3,600 s" in out
        fill(db.parent / "other.sqlite", 1)
        bury_all(db.parent / "other.sqlite")
        assert run("status", str(db.parent / "other.sqlite"))[0] == exits.DEAD_LETTERS
        fill(db, 1, ago=7200)  # (a new log of the same store: one pending, one more)
        with MinLog.open(db, transport=MemoryTransport(reject=lambda r: "E9"),
                         system_name="Cura", start_worker=False, exit_timeout=0.0,
                         rate_limit=None, batch_size=1) as log:
            log.step()
        status, out, _ = run("status", str(db), "--max-age", "3600", "--json")
        assert (status, one_json(out)["problems"]) == (exits.DEAD_LETTERS,
                                                       ["dead_letters", "backlog"])

    def test_drain_tells_dead_letters_from_a_backlog(self, tmp_path: Path) -> None:
        """drain: 3 when the receiver refused entries; 4 when entries are left at the
        timeout (the receiver down); 0 when all went."""
        refused, down = tmp_path / "refused.sqlite", tmp_path / "down.sqlite"
        fill(refused, 2)
        fill(down, 2)
        with FakeNSP(cvr=CVR, reject=lambda r: "E-REFUSED") as nsp:
            config = transport_toml(tmp_path, nsp)
            assert run("drain", str(refused), "--config", str(config),
                       "--rate-limit", "none")[0] == exits.DEAD_LETTERS
        with FakeNSP(cvr=CVR) as nsp:
            config = transport_toml(tmp_path, nsp)
            nsp.inject(Fault("http503", times=1000))
            status, out, err = run("drain", str(down), "--config", str(config), "--timeout",
                                   "1", "--progress", "0.25", "--rate-limit", "none")
            assert status == exits.BACKLOG
            assert "pending 2" in out
            # A progress line on standard error while it lasted (the timeout is longer
            # than the interval, so the first slice always ends in one).
            assert re.search(r"^minlog drain: delivered 0; pending 2", err, re.M)
            nsp._faults.clear()
            assert run("drain", str(down), "--config", str(config),
                       "--rate-limit", "none")[0] == exits.OK

    def test_usage_and_errors(self, db: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
        """Bad usage is 2 (argparse's and redrive's), a failure is 1."""
        from minlog.cli import main as cli

        for argv in (["status"], ["status", str(db), "--max-age", "-1"],
                     ["drain", str(db), "--config", "x", "--rate-limit", "20"],
                     ["worker", str(db), "--config", "x", "--health-port", "70000"],
                     ["status", str(db), "--colour"]):
            with pytest.raises(SystemExit) as e:
                cli.main(argv)
            assert e.value.code == exits.USAGE, argv
        assert run("redrive", str(db))[0] == exits.USAGE
        assert run("status", str(tmp_path / "nothing.sqlite"))[0] == exits.ERROR
        assert run("drain", str(db), "--config", str(tmp_path / "none.toml"))[0] == exits.ERROR
        capsys.readouterr()

    def test_the_table_in_the_docs_names_every_code(self) -> None:
        """docs/operations.md has one row per constant of minlog.cli.exits."""
        text = (ROOT / "docs" / "operations.md").read_text()
        for name in exits.__all__:
            value = getattr(exits, name)
            if isinstance(value, int):
                assert re.search(rf"^\| {value} \| `{name}` \|", text, re.M), name


class TestVersionAndModule:
    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        import minlog
        from minlog.cli import main as cli

        with pytest.raises(SystemExit) as e:
            cli.main(["--version"])
        assert e.value.code == 0
        assert capsys.readouterr().out == f"minlog {minlog.__version__}\n"

    def test_python_dash_m_minlog(self, db: Path) -> None:
        """`python -m minlog` is the command, exit statuses and JSON included."""
        bury_all(db)
        done = subprocess.run([sys.executable, "-m", "minlog", "status", str(db), "--json"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == exits.DEAD_LETTERS
        assert json.loads(done.stdout)["dead"] == 3
        done = subprocess.run([sys.executable, "-m", "minlog", "--version"],
                              capture_output=True, text=True, timeout=120, check=True)
        assert done.stdout.startswith("minlog ")


class TestVerbose:
    def test_events_on_stderr_at_info_with_v(self, tmp_path: Path) -> None:
        """Without -v only warnings reach standard error; with -v the INFO events, one
        line each; --log-format json makes each a JSON object with its fields."""
        quiet, loud, as_json = (tmp_path / f"{n}.sqlite" for n in ("q", "l", "j"))
        for path in (quiet, loud, as_json):
            fill(path, 2)
        with FakeNSP(cvr=CVR) as nsp:
            config = str(transport_toml(tmp_path, nsp))
            _, _, err = run("drain", str(quiet), "--config", config, "--rate-limit", "none")
            assert "batch_delivered" not in err
            _, _, err = run("drain", str(loud), "--config", config, "-v",
                            "--rate-limit", "none")
            assert re.search(r"INFO minlog.delivery batch_delivered: .*\[tenant= entries=2",
                             err)
            _, _, err = run("-v", "--log-format", "json", "drain", str(as_json),
                            "--config", config, "--rate-limit", "none")
        events = [json.loads(line) for line in err.splitlines()]
        delivered = [e for e in events if e["event"] == "batch_delivered"]
        assert delivered
        assert delivered[0]["acked"] == 2
        assert delivered[0]["level"] == "INFO"
        assert CITIZEN not in err

    def test_the_formatter_redacts(self) -> None:
        import logging

        record = logging.LogRecord("minlog", logging.WARNING, "p", 1,
                                   "refused %s", ("PersonIdentifier 0303303456",), None)
        assert CITIZEN not in EventFormatter("text").format(record)
        assert CITIZEN not in EventFormatter("json").format(record)


class TestProgress:
    def test_no_carriage_return_off_a_terminal(self) -> None:
        """Off a terminal a bar is whole lines, at most one per interval and the last."""
        stream = io.StringIO()
        progress = Progress("demo", every=3600, stream=stream)
        for done in range(0, 101, 10):
            progress.bar(done, 100, "events")
        assert "\r" not in stream.getvalue()
        assert stream.getvalue().splitlines() == ["minlog demo: 100/100 events"]

    def test_a_bar_on_a_terminal(self) -> None:
        """On a terminal (a pseudo-terminal here) the bar is redrawn in place."""
        leader, follower = os.openpty()
        try:
            with open(follower, "w", closefd=False) as tty:
                progress = Progress("demo", stream=tty)
                assert progress.terminal
                progress.bar(50, 100, "events")
                progress.bar(100, 100, "events")
            written = _read_pty(leader, until=b"\n")
        finally:
            os.close(leader)
            os.close(follower)
        assert written.count(b"\r  [") == 2
        assert b"100/100" in written
        # a \r of its own before the final newline)


def _read_pty(fd: int, *, until: bytes) -> bytes:
    """What a pseudo-terminal's other side has written, read until ``until`` arrives (a
    read returns what is there at that moment, which may be only the first write)."""
    written = b""
    while until not in written:
        ready, _, _ = select.select([fd], [], [], 10.0)
        if not ready:
            break
        written += os.read(fd, 4096)
    return written
