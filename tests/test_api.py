"""The public surface: exactly the documented names, typed, one error root, CLI help."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

import minlog
import minlog.testing
from minlog.cli import main as cli

DOCUMENTED = [
    "Access", "AlternativeId", "BatchResult", "ClosedError", "ConfigurationError",
    "DeadLetterInfo", "DeliveryError", "Employee", "EntryFailure", "FullName",
    "IdentityFormatter", "IdentityPolicy", "Initials", "MemoryTransport", "MinLog",
    "Minlog2Transport", "MinlogError", "OnBehalfOf", "Organisation", "PermanentDeliveryError",
    "PostgresStore", "RateLimit", "Registration", "RetryPolicy", "SQLiteStore", "Stats",
    "StepResult", "Store", "StoreError", "SystemCredentials", "TenantStats",
    "TransientDeliveryError",
    "Transport", "ValidationError", "__version__", "load_pkcs12",
]


class TestPublicApi:
    def test_all_is_the_documented_api(self) -> None:
        """minlog.__all__ is exactly the documented names, sorted, all present."""
        assert minlog.__all__ == DOCUMENTED
        assert all(hasattr(minlog, name) for name in minlog.__all__)

    def test_testing_kit(self) -> None:
        """minlog.testing exports the reference receiver and certificate helpers."""
        assert sorted(minlog.testing.__all__) == [
            "FakeNSP", "Fault", "FixedClock", "ReceivedBatch", "ShiftedClock", "SimulatedClock",
            "TestFederation",
            "TestPki",
            "issue_card", "make_test_certificate", "make_test_federation", "make_test_pki"]

    def test_bench_api(self) -> None:
        """minlog.bench exports the benchmark's run, its configuration and its results."""
        import minlog.bench

        assert minlog.bench.__all__ == [
            "BenchConfig", "BenchResult", "Check", "Latency", "MemoryResult", "NaiveResult",
            "ProbeResult", "Requirements", "RunResult", "Timeline", "run"]
        assert all(hasattr(minlog.bench, name) for name in minlog.bench.__all__)

    def test_py_typed_is_shipped(self) -> None:
        """The package is marked as typed."""
        assert (Path(minlog.__file__).parent / "py.typed").exists()

    def test_errors_share_one_root(self) -> None:
        """Every exported exception derives from MinlogError; ValidationError is a ValueError."""
        errors = [getattr(minlog, n) for n in minlog.__all__
                  if isinstance(getattr(minlog, n), type)
                  and issubclass(getattr(minlog, n), BaseException)]
        assert len(errors) == 8
        assert all(issubclass(e, minlog.MinlogError) for e in errors)
        assert issubclass(minlog.ValidationError, ValueError)


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


class TestCli:
    def test_every_command_has_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Each command has a help line, a description and a working --help."""
        parser = cli.build_parser()
        helps = {a.dest: a.help for a in parser._actions
                 if isinstance(a, argparse._SubParsersAction) for a in a._choices_actions}
        commands = _commands()
        assert set(commands) == {"demo", "status", "dead-letters", "redrive", "purge", "drain",
                                 "resolve", "codes", "rekey", "bench", "worker",
                                 "project"}
        for name, sub in commands.items():
            assert helps.get(name), name
            assert sub.description, name
            with pytest.raises(SystemExit) as e:
                cli.main([name, "--help"])
            assert e.value.code == 0
            assert "usage:" in capsys.readouterr().out

    def test_the_command_runs(self) -> None:
        """`python -m minlog.cli.main --help` works as a process."""
        done = subprocess.run([sys.executable, "-m", "minlog", "--help"],
                              capture_output=True, text=True, check=True)
        assert "usage:" in done.stdout

    def test_operator_commands_on_a_store(self, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
        """status, dead-letters, redrive and purge work on a real store."""
        import datetime as dt

        db = tmp_path / "m.sqlite"
        t = minlog.MemoryTransport(reject=lambda r: "E9")
        with minlog.MinLog.open(db, transport=t, system_name="Cura", start_worker=False) as log:
            log.record(minlog.Access("0303303456", minlog.Employee("0101701234", name="A"),
                                     minlog.Organisation("380000000000001"), "Opslag",
                                     dt.datetime.now(dt.UTC)))
            log.flush(timeout=5)
        capsys.readouterr()
        assert cli.main(["status", str(db)]) == 3  # dead letters wait (minlog.cli.exits)
        assert "dead letters:       1" in capsys.readouterr().out
        assert cli.main(["dead-letters", str(db)]) == 0
        listed = capsys.readouterr().out
        assert "E9" in listed
        assert "0303303456" not in listed
        assert cli.main(["redrive", str(db), "--all"]) == 0
        assert "1 dead letters returned" in capsys.readouterr().out
        assert cli.main(["status", str(db), "--json"]) == 0
        assert '"pending": 1' in capsys.readouterr().out
        assert cli.main(["purge", str(db)]) == 0


class TestDrain:
    def test_drain_delivers_with_a_toml_config(self, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        """`minlog drain --config` sends the outbox over HTTP and reports what it did."""
        import datetime as dt

        from minlog.testing import FakeNSP, make_test_certificate

        db = tmp_path / "m.sqlite"
        with minlog.MinLog.open(db, transport=minlog.MemoryTransport(), system_name="Cura",
                                start_worker=False, exit_timeout=0.0) as log:
            for i in range(3):
                log.record(minlog.Access("0303303456",
                                         minlog.Employee(f"010170123{i}", name=f"E{i}"),
                                         minlog.Organisation("380000000000001"), "Opslag",
                                         dt.datetime.now(dt.UTC)))
        p12, password = make_test_certificate("12345678", "Testkommune")
        (tmp_path / "system.p12").write_bytes(p12)
        monkeypatch.setenv("P12_PASSWORD", password.decode())
        with FakeNSP(cvr="12345678") as nsp:
            (tmp_path / "minlog.toml").write_text(
                "[minlog2]\n"
                f'service_url = "{nsp.service_url}"\nsts_url = "{nsp.sts_url}"\n'
                'pkcs12 = "system.p12"\npassword_env = "P12_PASSWORD"\ncvr = "12345678"\n'
                'system_name = "Cura"\ncare_provider_name = "Testkommune"\n')
            capsys.readouterr()
            assert cli.main(["drain", str(db), "--config", str(tmp_path / "minlog.toml")]) == 0
            assert "delivered 3" in capsys.readouterr().out
            assert len(nsp.received) == 3

    @pytest.mark.parametrize(("toml", "says"), [
        ("", "[minlog2]"),
        ("[minlog2]\nservice_url = 'https://x'", "minlog2.sts_url"),
        ("[minlog2]\ncolour = 1", "unknown keys"),
    ])
    def test_bad_config_names_the_key(self, tmp_path: Path, toml: str, says: str) -> None:
        """Each mistake in the transport config is a ConfigurationError naming the key."""
        from minlog.config import transport_from_toml

        (tmp_path / "c.toml").write_text(toml)
        with pytest.raises(minlog.ConfigurationError, match=re.escape(says)):
            transport_from_toml(tmp_path / "c.toml")
