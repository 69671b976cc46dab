"""`minlog bench` and `minlog.bench`: peak-load benchmarking with a vendor's own volumes.

Runs here are tiny (a few care workers): they check what is measured and reported, and
that the benchmark keeps its promises (fresh stores only, thresholds, exit status), never
how fast anything is (speed goals live in ``benchmarks/``).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from conftest import POSTGRES_URL

import minlog.bench
from minlog import ConfigurationError
from minlog.bench import BenchConfig, Requirements, run
from minlog.bench.receiver import Receiver
from minlog.bench.result import BINS_US, RunResult, Timeline, latency
from minlog.bench.workload import busiest_rate, first_accesses, prepare, shaped
from minlog.cli import main as cli
from minlog.testing.workload import MorningPeak

TINY = MorningPeak(employees=6, citizens=120, visits=5, opens=4.0)
_RUN = RunResult(name="flat-out", feed="record", threads=1, rate=None, events=100,
                 first_of_day=10, seconds=1.0, first=None, duplicates=None, lag=None,
                 delivered=None, requests=None, backlog=None, drain_s=None, delivery_s=None,
                 timeline=Timeline(0.05, (), ()))


def tiny(target: Path | str, **options: Any) -> BenchConfig:
    """A benchmark of the tiny morning: no memory children unless asked, a short probe."""
    defaults: dict[str, Any] = {"workload": TINY, "receiver": "memory", "probe": 100,
                                "memory_keys": 0}
    return BenchConfig(target, **{**defaults, **options})


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> minlog.bench.BenchResult:
    """One tiny run on SQLite, delivered to FakeNSP, two threads, memory measured."""
    folder = tmp_path_factory.mktemp("bench")
    return run(tiny(folder / "bench.sqlite", receiver="fakensp", threads=2,
                    memory_keys=2_000))


class TestWorkload:
    def test_shaped_by_first_of_day(self) -> None:
        """--first-of-day N makes N / visits care workers, 15 citizens each."""
        peak = shaped(60_000)
        assert (peak.employees, peak.visits, peak.citizens) == (5_000, 12, 75_000)
        assert shaped(100, visits=10, citizens=500).employees == 10

    def test_prepare_gives_every_event_to_one_thread_by_care_worker(self) -> None:
        """Each event goes to exactly one caller thread; a care worker's events to one."""
        prepared = prepare(TINY, threads=4)
        indexes = sorted(i for share in prepared.shares for i in share)
        assert indexes == list(range(len(prepared.events)))
        for share in prepared.shares:
            workers = {prepared.events[i].employee.id for i in share}
            others = {prepared.events[i].employee.id for s in prepared.shares if s is not share
                      for i in s}
            assert not workers & others
        assert prepared.first_of_day == len(first_accesses(prepared.events)) == 30

    def test_the_clock_is_after_the_morning_on_its_day(self) -> None:
        """The library's clock starts a minute after the last event, on the fixed day."""
        prepared = prepare(TINY, threads=1)
        last = max(a.at for a in prepared.events)
        assert prepared.clock_at == last.timestamp() + 60
        assert last.date() == TINY.day

    def test_busiest_rate(self) -> None:
        """The busiest minute's events per second, from the events' own times."""
        events = prepare(TINY, threads=1).events
        rate = busiest_rate(events)
        assert 0 < rate * 60 <= len(events)
        assert busiest_rate(events[:1]) == 1 / 60

    def test_bad_volumes_are_refused(self) -> None:
        """Volumes that make no morning are a ConfigurationError naming the field."""
        with pytest.raises(ConfigurationError, match="employees"):
            prepare(MorningPeak(employees=0), threads=1)
        with pytest.raises(ConfigurationError, match="citizens"):
            prepare(MorningPeak(citizens=3, visits=12), threads=1)
        with pytest.raises(ConfigurationError, match="threads"):
            prepare(TINY, threads=0)


class TestLatency:
    def test_nearest_rank_percentiles(self) -> None:
        """p50/p90/p99/max are nearest-rank over the calls, in microseconds."""
        lat = latency([i * 1000 for i in range(1, 101)])  # 1..100 µs
        assert lat is not None
        assert (lat.calls, lat.p50_us, lat.p90_us, lat.p99_us, lat.max_us) == (
            100, 50.0, 90.0, 99.0, 100.0)

    def test_histogram_holds_every_call(self) -> None:
        """Every call falls in one bin; the bins end at 10 s and catch what is slower."""
        lat = latency([500, 1_000, 1_500, 3_000_000, 50_000_000_000])
        assert lat is not None
        assert sum(lat.histogram) == 5
        assert lat.histogram[0] == 2
        assert lat.histogram[1] == 1
        assert lat.histogram[-1] == 1
        assert BINS_US[-1] == 1e7

    def test_no_calls(self) -> None:
        """No calls: no summary."""
        assert latency([]) is None


class TestRun:
    def test_the_morning_flat_out_and_paced(self, result: minlog.bench.BenchResult) -> None:
        """Both runs record the whole morning with the exact first-of-day count, and time
        every call, split into first-of-day calls and duplicates."""
        flat, paced = result.run("flat-out"), result.run("paced")
        assert flat is not None
        assert paced is not None
        assert flat.rate is None
        assert paced.rate is not None
        assert paced.rate > 0
        expected = result.setup["workload"]["first_of_day"]
        for r in (flat, paced):
            assert (r.events, r.first_of_day) == (result.setup["workload"]["events"], expected)
            assert r.first is not None
            assert r.duplicates is not None
            assert r.first.calls == expected
            assert r.first.calls + r.duplicates.calls == r.events
            assert 0 < r.first.p50_us <= r.first.p99_us <= r.first.max_us
            assert r.events_per_s > 0
            assert r.first_of_day_per_s > 0
            assert sum(r.timeline.events) == r.events
        assert paced.lag is not None
        assert flat.lag is None

    def test_delivery_to_fakensp_takes_every_log(self, result: minlog.bench.BenchResult
                                                 ) -> None:
        """The worker delivers every first-of-day log to FakeNSP, with no rate limit."""
        for r in result.runs:
            assert r.delivered == r.first_of_day
            assert r.requests is not None
            assert 1 <= r.requests <= r.first_of_day
            assert r.drain_s is not None
            assert r.delivery_per_s
            assert sum(r.timeline.delivered) == r.first_of_day
        assert result.setup["delivery"]["rate_limit"] is None
        assert "FakeNSP" in result.setup["delivery"]["receiver"]

    def test_baselines_probe_and_memory(self, result: minlog.bench.BenchResult) -> None:
        """The naive logger, the per-event probe and memory per hot key are measured in
        the same run, with their ratios."""
        assert result.naive is not None
        assert result.naive.events_per_s > 0
        assert result.vs_naive is not None
        assert result.vs_naive > 0
        assert result.probe is not None
        assert result.probe.record.calls == result.probe.commit.calls == 100
        assert result.probe.ratio == result.probe.record.p50_us / result.probe.commit.p50_us
        assert result.memory is not None
        assert result.memory.keys == 2_000
        assert result.memory.rss_bytes_per_key > 0
        assert result.memory.traced_bytes_per_key > 0
        assert result.ratios() == {"vs_naive": result.vs_naive,
                                   "first_of_day_vs_commit": result.probe.ratio}

    def test_json_form(self, result: minlog.bench.BenchResult) -> None:
        """The JSON form holds the setup, runs, baselines and checks, and is JSON."""
        data = json.loads(json.dumps(result.to_dict()))
        assert set(data) >= {"ok", "environment", "setup", "runs", "naive", "probe",
                             "memory", "ratios", "checks"}
        assert data["runs"][0]["events_per_s"] == result.runs[0].events_per_s
        assert data["setup"]["workload"]["day"] == TINY.day.isoformat()

    def test_record_many_without_delivery(self, tmp_path: Path) -> None:
        """record_many in batches, delivery off: nothing delivered, calls are batches."""
        r = run(tiny(tmp_path / "b.sqlite", feed="record_many", batch=10, delivery=False,
                     paced=False, naive=False, probe=0))
        (flat,) = r.runs
        assert flat.delivered is None
        assert flat.backlog is None
        total = (flat.first.calls if flat.first else 0) + (
            flat.duplicates.calls if flat.duplicates else 0)
        assert total == -(-flat.events // 10)  # one caller thread: ceil(events / 10) calls
        assert r.naive is None
        assert r.probe is None
        assert r.vs_naive is None

    def test_paced_run_at_a_given_rate_for_a_given_time(self, tmp_path: Path) -> None:
        """--rate R --paced-seconds S replays the morning's first R x S events, calls
        starting at their arrival times (so the run lasts about S seconds)."""
        r = run(tiny(tmp_path / "b.sqlite", rate=200.0, paced_seconds=0.5, naive=False,
                     probe=0, delivery=False))
        paced = r.run("paced")
        assert paced is not None
        assert paced.events == 100
        assert paced.first_of_day == len(first_accesses(prepare(TINY, 1).events[:100]))
        assert paced.seconds >= 0.49
        assert paced.lag is not None
        assert paced.lag.calls == 100

    def test_rounds_alternate_and_report_the_median(self, tmp_path: Path) -> None:
        """With rounds, the naive logger and the flat-out run alternate; the round whose
        ratio is the median is reported, and every round's figures are kept."""
        r = run(tiny(tmp_path / "b.sqlite", rounds=3, paced=False, probe=0))
        rounds = r.setup["rounds"]
        assert rounds["rounds"] == 3
        assert len(rounds["flat_out_events_per_s"]) == len(rounds["naive_events_per_s"]) == 3
        assert r.vs_naive == sorted(rounds["vs_naive"])[1]
        k = rounds["reported"] - 1
        assert r.runs[0].events_per_s == rounds["flat_out_events_per_s"][k]
        assert r.naive is not None
        assert r.naive.events_per_s == rounds["naive_events_per_s"][k]

    def test_the_median_round(self) -> None:
        """The median of an even count of rounds is the lower one (the cautious pick)."""
        from minlog.bench.result import NaiveResult
        from minlog.bench.runner import _median_round

        flats = [attrs.evolve(_RUN, seconds=s) for s in (1.0, 2.0, 4.0, 8.0)]
        naives = [NaiveResult(100, 1.0)] * 4
        assert _median_round(flats, naives) == 2  # ratios 1, 0.5, 0.25, 0.125
        assert _median_round(flats[:3], []) == 1

    def test_any_date(self, tmp_path: Path) -> None:
        """The workload's day is fixed and so is the library's clock: a morning of another
        year gives the same answers."""
        peak = attrs.evolve(TINY, day=dt.date(2031, 3, 30))  # the day after a DST change
        r = run(tiny(tmp_path / "b.sqlite", workload=peak, paced=False, naive=False,
                     probe=0))
        assert r.runs[0].first_of_day == prepare(peak, 1).first_of_day
        assert r.setup["clock_starts_at"].startswith("2031-03-30")


class TestRequirements:
    def test_met_and_missed(self, tmp_path: Path) -> None:
        """A threshold met is ok; one missed fails the result and is named."""
        r = run(tiny(tmp_path / "b.sqlite", paced=False, requirements=Requirements(
            events_per_s=1.0, vs_naive=1e9, first_of_day_vs_commit=1e9, p99_ms=1e6)))
        by_name = {c.name: c for c in r.checks}
        assert by_name["events_per_s"].ok
        assert by_name["first_of_day_vs_commit"].ok
        assert not by_name["vs_naive"].ok
        assert [c.name for c in r.failed] == ["vs_naive"]
        assert not r.ok
        assert [c.what for c in r.checks if c.name == "p99_ms"] == [
            "p99 of first-of-day calls, flat-out", "p99 of duplicate calls, flat-out"]

    def test_a_figure_not_measured_is_a_miss(self, tmp_path: Path) -> None:
        """A threshold on something this run did not measure fails (never passes
        silently): here delivery was off."""
        r = run(tiny(tmp_path / "b.sqlite", delivery=False, paced=False, naive=False,
                     probe=0, requirements=Requirements(delivery_per_s=1.0)))
        (check,) = r.checks
        assert check.measured is None
        assert not check.ok


class TestStores:
    def test_the_named_sqlite_path_is_never_written(self, tmp_path: Path) -> None:
        """The benchmark runs in a new folder beside the named path and removes it."""
        run(tiny(tmp_path / "eoj.sqlite", paced=False, probe=0))
        assert list(tmp_path.iterdir()) == []

    def test_a_store_holding_data_is_refused(self, tmp_path: Path) -> None:
        """An existing file with data is refused without force, and left as it was with
        force."""
        live = tmp_path / "minlog.sqlite"
        live.write_bytes(b"SQLite format 3\x00" + bytes(1000))
        with pytest.raises(ConfigurationError, match="holds data"):
            run(tiny(live))
        run(tiny(live, force=True, paced=False, naive=False, probe=0))
        assert live.read_bytes() == b"SQLite format 3\x00" + bytes(1000)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["minlog.sqlite"]

    def test_keep_leaves_the_stores(self, tmp_path: Path) -> None:
        """keep leaves the benchmark's folder and its stores behind."""
        r = run(tiny(tmp_path, keep=True, paced=False, naive=False, probe=0))
        (folder,) = tmp_path.iterdir()
        assert folder.name.startswith(".minlog.bench-")
        assert any(p.suffix == ".sqlite" for p in folder.iterdir())
        assert str(folder) in r.setup["store"]

    def test_a_missing_folder_is_refused(self, tmp_path: Path) -> None:
        """A path in a folder that does not exist is a ConfigurationError."""
        with pytest.raises(ConfigurationError, match="not a folder"):
            run(tiny(tmp_path / "nowhere" / "b.sqlite"))

    @pytest.mark.postgres
    def test_postgres_in_fresh_schemas_dropped_after(self, pg_schema: str) -> None:
        """On PostgreSQL every measurement runs in a fresh schema, dropped at the end, and
        the probe's bare commit is a PostgreSQL commit."""
        import psycopg

        def bench_schemas() -> set[str]:
            with psycopg.connect(POSTGRES_URL) as conn:
                return {r[0] for r in conn.execute(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'minlog_bench_%'")}

        before = bench_schemas()
        r = run(tiny(POSTGRES_URL, schema=pg_schema, paced=False))
        assert r.setup["kind"] == "postgres"
        assert r.runs[0].first_of_day == prepare(TINY, 1).first_of_day
        assert r.probe is not None
        assert r.naive is not None
        assert bench_schemas() == before

    @pytest.mark.postgres
    def test_postgres_live_store_is_refused(self, pg_schema: str) -> None:
        """A database whose named schema holds a minlog store is refused without force,
        and its data is untouched with force."""
        from minlog.store import NewEntry
        from minlog.store.postgres import PostgresStore

        store = PostgresStore(POSTGRES_URL, schema=pg_schema)
        try:
            store.prepare(740_000)
            store.append([NewEntry(740_000, bytes(16), b"payload")], 1.0)
            with pytest.raises(ConfigurationError, match="holds a minlog store"):
                run(tiny(POSTGRES_URL, schema=pg_schema))
            run(tiny(POSTGRES_URL, schema=pg_schema, force=True, paced=False, naive=False,
                     probe=0))
            assert store.counts().pending == 1
        finally:
            store.close()


class TestConfig:
    @pytest.mark.parametrize(("option", "value"), [
        ("threads", 0), ("batch", 0), ("feed", "record_few"), ("receiver", "smtp"),
        ("rate", 0.0), ("probe", 10), ("memory_keys", -1), ("batch_size", 0), ("rounds", 0),
        ("paced_seconds", 0.0)])
    def test_bad_options_are_refused(self, tmp_path: Path, option: str, value: Any) -> None:
        """A bad option is a ConfigurationError naming it, before anything runs."""
        with pytest.raises(ConfigurationError, match=option):
            BenchConfig(tmp_path / "b.sqlite", **{option: value})


class TestCli:
    def test_table_and_exit_status(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                   ) -> None:
        """The table names each figure and each check; a missed threshold exits 3 and
        says which on stderr."""
        status = cli.main([
            "bench", str(tmp_path / "b.sqlite"), "--employees", "6", "--citizens", "120",
            "--visits", "5", "--opens", "4", "--receiver", "memory", "--probe", "100",
            "--memory-keys", "0", "--no-paced", "--quiet",
            "--require-events-per-s", "1", "--require-vs-naive", "1000000"])
        out, err = capsys.readouterr()
        assert status == 3
        for text in ("events/s", "first-of-day logs/s", "p50 / p99 / max", "naive logger",
                     "bare INSERT+COMMIT", "no rate limit", "MISSED", "--require-vs-naive"):
            assert text in out, text
        assert "threshold missed: --require-vs-naive" in err
        assert "--require-events-per-s" not in err

    def test_json_and_save(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--json prints the JSON form; --save writes it too; every threshold met exits 0."""
        saved = tmp_path / "out" / "bench.json"
        status = cli.main([
            "bench", str(tmp_path / "b.sqlite"), "--first-of-day", "20", "--visits", "5",
            "--receiver", "memory", "--probe", "0", "--memory-keys", "0", "--no-naive",
            "--no-paced", "--json", "--save", str(saved), "--quiet",
            "--require-first-of-day-per-s", "1"])
        data = json.loads(capsys.readouterr().out)
        assert status == 0
        assert data["ok"] is True
        assert data["setup"]["workload"]["first_of_day"] == 20
        assert json.loads(saved.read_text()) == data

    def test_plot_without_matplotlib_says_how_to_install(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> None:
        """Without the plot extra, --plot says how to install it and runs nothing."""
        from minlog.bench import plot

        monkeypatch.setattr(plot, "available", lambda: False)
        status = cli.main(["bench", str(tmp_path / "b.sqlite"), "--plot",
                           str(tmp_path / "p.png")])
        assert status == 2
        assert "pip install 'minlog[plot]'" in capsys.readouterr().err
        assert list(tmp_path.iterdir()) == []

    def test_plot(self, tmp_path: Path, result: minlog.bench.BenchResult) -> None:
        """With the plot extra, the picture is drawn (latency and throughput panels)."""
        pytest.importorskip("matplotlib")
        from minlog.bench import plot

        plot.save(result, tmp_path / "p.png")
        assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_first_of_day_and_employees_together_are_refused(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--first-of-day shapes the workers itself: with --employees it is an error."""
        status = cli.main(["bench", str(tmp_path / "b.sqlite"), "--first-of-day", "100",
                           "--employees", "5"])
        assert status == 1
        assert "--first-of-day or --employees" in capsys.readouterr().err

    def test_the_core_never_imports_matplotlib(self, tmp_path: Path) -> None:
        """A benchmark run (without --plot) does not import matplotlib."""
        code = (
            "import sys\n"
            "from minlog.cli.main import main\n"
            f"main(['bench', {str(tmp_path / 'b.sqlite')!r}, '--employees', '3',"
            " '--citizens', '60', '--visits', '3', '--receiver', 'memory', '--probe', '0',"
            " '--memory-keys', '0', '--no-paced', '--no-naive', '--quiet', '--json'])\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n")
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


class TestReceiver:
    def test_stop_releases_the_child_and_its_pipes(self) -> None:
        """Stopping the receiver ends its process and closes both pipes (no file left
        open for the garbage collector to warn about)."""
        receiver = Receiver("29189846", 1_790_000_000.0)
        counts = receiver.stop()
        assert counts == {"accepted": 0, "calls": 0, "cards": 0}
        assert receiver._proc.returncode == 0
        assert receiver._proc.stdout is not None
        assert receiver._proc.stdout.closed
        assert receiver._proc.stdin is not None
        assert receiver._proc.stdin.closed


class TestInterrupted:
    def test_sigterm_removes_the_benchmark_stores(self, tmp_path: Path) -> None:
        """A benchmark stopped by SIGTERM (a CI job's timeout) still removes the stores it
        made, and exits with 143."""
        import signal
        import time

        proc = subprocess.Popen(
            [sys.executable, "-m", "minlog", "bench", str(tmp_path / "b.sqlite"),
             "--employees", "400", "--receiver", "memory", "--quiet", "--rounds", "50"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while not any(p.suffix == ".sqlite" for d in tmp_path.iterdir()
                          for p in d.iterdir()):
                assert time.monotonic() < deadline, "the benchmark made no store"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 143
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        assert list(tmp_path.iterdir()) == []
