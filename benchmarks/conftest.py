"""Fixtures and the end-of-session summary for minlog's benchmarks (see README.md).

* ``workload``: the morning peak (`minlog.testing.workload.MorningPeak`) scaled by
  ``MINLOG_BENCH_SCALE``, its events built before any timing (building `Access` objects is
  the audit hook's cost, not ours), in Copenhagen time as an EOJ gives them and as UTC.
* ``lab``: opens fresh `MinLog` instances on temporary SQLite files, a frozen clock just
  after the replayed morning, the delivery worker delivering into ``MemoryTransport``
  with no rate limit while the benchmark runs (``deliver=False`` holds it back: only
  for the "held back" half of a comparison, and for the tracemalloc hot-set figure).
* ``measure``: runs one benchmark with ``benchmark.pedantic`` (fresh state per round),
  records events/s in ``benchmark.extra_info`` and in the summary.

At the end of the session a table of events/s, the goals and the ratios to the naive
baseline of the same run is printed and written to ``.benchmarks/minlog-summary-<mode>.json``
(``.benchmarks/`` is gitignored).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import platform
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

import minlog
from minlog import Access, MemoryTransport, MinLog
from minlog.bench.workload import first_accesses, hot_set_events, peak_for
from minlog.core.clock import FixedClock
from minlog.testing.workload import MorningPeak

FULL_SCALE = 8.0  # ~306k events, 38.4k first-of-day
SMOKE_SCALE = 0.25  # ~9.4k events: the CI smoke run (--benchmark-disable)
KEYS_PER_SCALE = 25_000  # hot-set memory: 200k first-of-day keys at the full scale
ARRIVAL_BATCH = 1_000  # events per record_many call in the "arrival batches" runs
KEY = bytes(range(32))  # a fixed master secret: every store of the session agrees
SYSTEM_NAME = "Bench EOJ"

#: name -> (goal, unit); throughput goals are "at least", the memory goal "at most". A
#: unit "x <benchmark name>" is a ratio to that benchmark's events/s in the same run.
NAIVE = "morning peak: naive baseline, one commit per event"
PQUEUE = "morning peak: persist-queue + in-memory set, one put per new event"
HELD_BACK = "morning peak: record_many, arrival batches, delivery held back"
GOALS: dict[str, tuple[float, str]] = {
    "duplicates/record_many": (1_500_000, "events/s"),
    "duplicates/record": (500_000, "events/s"),
    "first_of_day/record_many": (80_000, "events/s"),
    "morning_peak/record_vs_naive": (2.0, f"x {NAIVE}"),
    "morning_peak/record_vs_pqueue": (1.0, f"x {PQUEUE}"),
    "morning_peak/record_many_vs_naive": (10.0, f"x {NAIVE}"),
    "morning_peak/delivering_vs_held_back": (0.8, f"x {HELD_BACK}"),
    "hot_set/bytes_per_key": (120.0, "bytes/key"),
}


# --------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Workload:
    """The events of one scaled morning peak, built once per session."""

    scale: float
    peak: MorningPeak
    events: list[Access]  # the whole morning, Copenhagen time, in time order
    events_utc: list[Access]  # the same accesses with their times in UTC
    first_of_day: list[Access]  # the first access of each (employee, citizen), in order
    hot_set_keys: int  # how many first-of-day keys the memory benchmark records
    now: float  # the frozen clock: one minute after the last event

    @property
    def duplicate_share(self) -> float:
        return 1 - len(self.first_of_day) / len(self.events)

    def describe(self) -> dict[str, Any]:
        p = self.peak
        return {
            "scale": self.scale, "events": len(self.events),
            "first_of_day": len(self.first_of_day),
            "duplicate_share": round(self.duplicate_share, 4),
            "employees": p.employees, "citizens": p.citizens, "visits": p.visits,
            "opens": p.opens, "gap_s": p.gap, "visit_minutes": p.visit_minutes,
            "units": p.units, "day": p.day.isoformat(), "start": p.start.isoformat(),
            "spread_minutes": p.spread_minutes, "seed": p.seed,
            "arrival_batch": ARRIVAL_BATCH, "hot_set_keys": self.hot_set_keys,
        }


def _disabled(config: pytest.Config) -> bool:
    """True for the smoke run: pytest-benchmark runs each body once, untimed."""
    return bool(config.getoption("benchmark_disable")) and not config.getoption(
        "benchmark_enable")


def _scale(config: pytest.Config) -> float:
    text = os.environ.get("MINLOG_BENCH_SCALE")
    if text:
        scale = float(text)
        if scale <= 0:
            raise pytest.UsageError("MINLOG_BENCH_SCALE must be positive")
        return scale
    return SMOKE_SCALE if _disabled(config) else FULL_SCALE


def as_utc(events: Sequence[Access]) -> list[Access]:
    """The same accesses with ``at`` in UTC (as a system that logs in UTC gives them)."""
    return [Access(a.citizen, a.employee, a.organisation, a.activity,
                   a.at.astimezone(dt.UTC)) for a in events]


@pytest.fixture(scope="session")
def workload(pytestconfig: pytest.Config) -> Workload:
    scale = _scale(pytestconfig)
    peak = peak_for(scale)
    events = peak.events()
    return Workload(
        scale=scale, peak=peak, events=events, events_utc=as_utc(events),
        first_of_day=first_accesses(events),
        hot_set_keys=max(1_000, round(KEYS_PER_SCALE * scale)),
        now=events[-1].at.timestamp() + 60,
    )


@pytest.fixture(scope="session", name="hot_set_events")
def hot_set_events_fixture(workload: Workload) -> list[Access]:
    """``workload.hot_set_keys`` distinct first-of-day accesses of one day (opens=1)."""
    return hot_set_events(workload.hot_set_keys)


# --------------------------------------------------------------------------- stores


class Lab:
    """Opens `MinLog` instances on temporary SQLite files; closes (and deletes) them again.

    Each instance's delivery worker delivers into a `MemoryTransport` while the benchmark
    runs, as in production: batches that fill (the default ``fill_wait``: full batches of
    500), with no rate limit (``rate_limit=None``: as fast as the transport takes them);
    ``deliver=False`` holds it back.

    Opening closes the instances opened before, so a benchmark's setup can make fresh state
    for every round without relying on a teardown (pytest-benchmark skips it when disabled).
    """

    def __init__(self, folder: Path, now: float) -> None:
        self.folder = folder
        # A frozen clock, as the demo uses to replay a past morning. ``repeat(x).__next__``
        # is a C call like ``time.time``: the clock adds no Python frame to ``record``.
        self.clock = FixedClock(now)
        self._open: list[tuple[MinLog, Path | None]] = []
        self._counter = itertools.count()

    def path(self, stem: str = "round") -> Path:
        return self.folder / f"{stem}-{next(self._counter)}.sqlite"

    def open(self, path: Path | None = None, *, keep: bool = False,
             deliver: bool = True) -> MinLog:
        """A fresh `MinLog` on ``path`` (default: a new file, deleted when closed), its
        worker delivering (``deliver=False``: held back)."""
        self.close_all()
        target = path or self.path()
        # The naive baseline commits with synchronous=NORMAL: the same durability here
        # ("process"); what "power" (the default) costs: test_bench_durability.py.
        log = MinLog.open(target, transport=MemoryTransport(), system_name=SYSTEM_NAME,
                          key=KEY, clock=self.clock, start_worker=deliver, rate_limit=None,
                          durability="process")
        self._open.append((log, None if keep or path is not None else target))
        return log

    @property
    def current(self) -> MinLog:
        """The instance opened last (still open)."""
        return self._open[-1][0]

    def close_all(self) -> None:
        while self._open:
            log, doomed = self._open.pop()
            log.close(timeout=60)  # the worker delivers what is left, then stops
            if doomed is not None:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{doomed}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def lab(tmp_path: Path, workload: Workload) -> Iterator[Lab]:
    lab = Lab(tmp_path, workload.now)
    yield lab
    lab.close_all()


@pytest.fixture
def pg() -> Any:
    """psycopg, once a PostgreSQL server answers at MINLOG_TEST_POSTGRES_URL; skips
    without one, unless MINLOG_REQUIRE_POSTGRES=1 (then fails)."""
    url = os.environ.get("MINLOG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as e:
        if os.environ.get("MINLOG_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required: {e}")
        pytest.skip(f"no PostgreSQL at {url}")
    return psycopg


@pytest.fixture
def save_figures(pytestconfig: pytest.Config) -> Callable[[str, dict[str, Any]], None]:
    """``save(name, figures)``: write ``.benchmarks/minlog-<name>-<full|smoke>.json``."""
    mode = "smoke" if _disabled(pytestconfig) else "full"

    def save(name: str, figures: dict[str, Any]) -> None:
        out = Path(".benchmarks")
        out.mkdir(exist_ok=True)
        (out / f"minlog-{name}-{mode}.json").write_text(json.dumps(figures, indent=2))

    return save


@pytest.fixture(scope="session")
def primed_store(tmp_path_factory: pytest.TempPathFactory, workload: Workload) -> Path:
    """A SQLite store that has recorded the whole morning once, and delivered it: every
    event is now a duplicate, and nothing waits in the outbox. A `MinLog` opened on it
    loads the day's keys into its hot set."""
    folder = tmp_path_factory.mktemp("primed")
    lab = Lab(folder, workload.now)
    path = folder / "primed.sqlite"
    log = lab.open(path)
    for i in range(0, len(workload.events), ARRIVAL_BATCH):
        log.record_many(workload.events[i : i + ARRIVAL_BATCH])
    assert log.stats().first_of_day == len(workload.first_of_day)
    assert log.flush(timeout=120)
    lab.close_all()
    return path


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    name: str
    group: str
    events: int
    seconds: list[float]  # one per round
    goals: tuple[str, ...] = ()  # GOALS keys
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return self.events / self.median

    @property
    def best_rate(self) -> float:
        return self.events / min(self.seconds)


class Results:
    """What the benchmarks of this session measured, for the summary."""

    def __init__(self) -> None:
        self.items: dict[str, Result] = {}
        self.memory: dict[str, Any] | None = None
        self.workload: Workload | None = None


_RESULTS = pytest.StashKey[Results]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RESULTS] = Results()


@pytest.fixture
def results(pytestconfig: pytest.Config, workload: Workload) -> Results:
    r = pytestconfig.stash[_RESULTS]
    r.workload = workload
    return r


Measure = Callable[..., Result]


@pytest.fixture
def measure(benchmark: Any, results: Results, pytestconfig: pytest.Config) -> Measure:
    """``measure(name, target, setup, events=n, rounds=k, goal=..., **info)``; ``goal`` is
    a GOALS key or a tuple of them.

    ``setup()`` builds fresh state and returns the target's positional arguments; only
    ``target(*args)`` is timed. Runs ``rounds`` rounds (one in the smoke run).
    """
    group = benchmark.group or ""

    def run(name: str, target: Callable[..., object], setup: Callable[[], tuple[Any, ...]],
            *, events: int, rounds: int, goal: str | tuple[str, ...] = (),
            **info: Any) -> Result:
        seconds: list[float] = []

        def timed(*args: Any) -> None:
            t0 = time.perf_counter()
            target(*args)
            seconds.append(time.perf_counter() - t0)

        benchmark.pedantic(timed, setup=lambda: (setup(), {}), rounds=rounds)
        goals = (goal,) if isinstance(goal, str) else goal
        result = Result(name, group, events, seconds, goals, info)
        results.items[name] = result
        benchmark.extra_info.update(
            info, label=name, events=events, rounds=len(seconds),
            events_per_s=round(result.rate), best_events_per_s=round(result.best_rate),
        )
        return result

    return run


# --------------------------------------------------------------------------- summary


def _si(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.1f}"


def _verdict(ok: bool) -> str:
    return "meets" if ok else "BELOW"


def _ratios(r: Results, mode: str, lines: list[str]) -> dict[str, Any]:
    """The goals that are ratios to another benchmark of the same run (``"x <name>"``),
    appended to ``lines``; returns them by goal."""
    out: dict[str, Any] = {}
    for key, (goal, unit) in GOALS.items():
        if not unit.startswith("x "):
            continue
        base = r.items.get(unit[2:])
        for res in r.items.values():
            if key not in res.goals or base is None:
                continue
            ratio, best = res.rate / base.rate, res.best_rate / base.best_rate
            if not out:
                lines += ["", "ratios of the same run (events/s over events/s; verdicts use "
                          "the medians):"]
            lines.append(f"  {res.name} / {base.name}: {ratio:.2f}x (best rounds: "
                         f"{best:.2f}x; goal >= {goal:g}x)  "
                         f"{'' if mode == 'smoke' else _verdict(ratio >= goal)}")
            out[key] = {"benchmark": res.name, "baseline": base.name, "ratio": ratio,
                        "best_rounds_ratio": best, "goal_at_least": goal}
    return out


def _summary(r: Results, mode: str) -> tuple[list[str], dict[str, Any]]:
    w = r.workload
    assert w is not None
    naive = r.items.get(NAIVE)
    lines = [
        f"minlog benchmarks ({mode} run, scale {w.scale:g}): {len(w.events):,} events, "
        f"{len(w.first_of_day):,} first-of-day, {w.duplicate_share:.1%} duplicates; "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs",
        "events/s = events / median round time; best/s = events / fastest round; 'x naive' = "
        "events/s / the naive baseline's events/s in this same run; verdicts use the median",
        "",
        f"{'benchmark':<62} {'events':>8} {'rounds':>6} {'median s':>9} "
        f"{'events/s':>10} {'best/s':>10} {'x naive':>8} {'goal':>10}  verdict",
    ]
    rows = []
    for res in r.items.values():
        goal = next((GOALS[g] for g in res.goals if not GOALS[g][1].startswith("x ")), None)
        ratio = res.rate / naive.rate if naive and not res.extra.get("not_a_rate") else None
        if goal is None:  # (ratios to another benchmark: below the table)
            goal_text, verdict = "", ""
        else:
            goal_text, verdict = f">= {_si(goal[0])}", _verdict(res.rate >= goal[0])
        rate, best = (("(n/a)", "(n/a)") if res.extra.get("not_a_rate")
                      else (_si(res.rate), _si(res.best_rate)))
        lines.append(
            f"{res.name:<62} {res.events:>8,} {len(res.seconds):>6} {res.median:>9.4f} "
            f"{rate:>10} {best:>10} {'' if ratio is None else f'{ratio:.1f}x':>8} "
            f"{goal_text:>10}  {'' if mode == 'smoke' else verdict}")
        rows.append({**asdict(res), "median_s": res.median, "events_per_s": res.rate,
                     "best_events_per_s": res.best_rate, "x_naive": ratio,
                     "goal": None if goal is None else {"at_least": goal[0], "unit": goal[1]}})
    ratios = _ratios(r, mode, lines)
    if r.memory:
        m = r.memory
        ok = m["bytes_per_key"] <= GOALS["hot_set/bytes_per_key"][0]
        lines += ["", f"hot set after {m['keys']:,} first-of-day keys of one day (goal <= 120 "
                  "bytes/key):",
                  f"  tracemalloc: {m['bytes_per_key']:.1f} bytes/key "
                  f"({m['bytes'] / 2**20:.1f} MiB)  "
                  f"{'' if mode == 'smoke' else ('meets' if ok else 'EXCEEDS')}",
                  f"  with pymalloc's 16-byte size classes (closer to what RSS sees): "
                  f"{m['allocator_bytes_per_key']:.1f} bytes/key (set table "
                  f"{m['set_table_bytes_per_key']:.1f} + one {m['key_object_bytes']}-byte "
                  f"bytes object in a {m['key_block_bytes']}-byte block)"]
    data = {"mode": mode, "workload": w.describe(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "minlog": minlog.__version__,
            "cpus": os.cpu_count(), "results": rows, "ratios": ratios,
            "hot_set": r.memory}
    return lines, data


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    r = config.stash.get(_RESULTS, None)
    if r is None or not r.items or r.workload is None:
        return
    mode = "smoke" if _disabled(config) else "full"
    lines, data = _summary(r, mode)
    terminalreporter.write_sep("=", "minlog benchmark summary")
    for line in lines:
        terminalreporter.write_line(line)
    if mode == "smoke":
        terminalreporter.write_line(
            "(smoke run: one round each on a small workload; the figures are not "
            "comparable with the goals)")
    out = config.rootpath / ".benchmarks" / f"minlog-summary-{mode}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    terminalreporter.write_line(f"written to {out}")

