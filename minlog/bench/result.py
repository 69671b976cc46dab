"""What `minlog.bench.run` returns: typed, frozen results, and the checks against a vendor's
thresholds (`Requirements`). ``BenchResult.to_dict()`` is the ``--json`` form."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import attrs

__all__ = ["BenchResult", "Check", "Latency", "MemoryResult", "NaiveResult", "ProbeResult",
           "Requirements", "RunResult", "Timeline", "latency"]

#: Upper edges (µs) of the latency histogram's bins: 1-2-5 steps from 1 µs to 10 s.
BINS_US: tuple[float, ...] = (*(m * 10.0**e for e in range(7) for m in (1, 2, 5)), 1e7)


@attrs.frozen
class Latency:
    """Per-call latency in microseconds (nearest-rank percentiles) and a histogram:
    ``histogram[i]`` calls took at most ``BINS_US[i]`` (and more than the bin before)."""

    calls: int
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    histogram: tuple[int, ...] = attrs.field(repr=False)


def latency(nanoseconds: Sequence[int]) -> Latency | None:
    """The summary of per-call latencies in nanoseconds; None for no calls."""
    if not nanoseconds:
        return None
    ordered = sorted(nanoseconds)
    n = len(ordered)

    def rank(q: float) -> float:
        return ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] / 1000.0

    hist = [0] * len(BINS_US)
    edges = [b * 1000.0 for b in BINS_US]
    i = 0
    for ns in ordered:  # ordered: one pass
        while i < len(edges) - 1 and ns > edges[i]:
            i += 1
        hist[i] += 1
    return Latency(n, rank(0.5), rank(0.9), rank(0.99), rank(0.999), ordered[-1] / 1000.0,
                   tuple(hist))


@attrs.frozen
class Timeline:
    """Throughput over time: per bucket of ``bucket_s`` seconds from the start of
    recording, the events recorded and the entries the receiver accepted."""

    bucket_s: float
    events: tuple[int, ...]
    delivered: tuple[int, ...]


@attrs.frozen
class RunResult:
    """One run of the morning through the library (flat-out, or paced at ``rate``)."""

    name: str
    feed: Literal["record", "record_many"]
    threads: int
    rate: float | None  # the arrival rate it was paced at (events/s); None: flat-out
    events: int
    first_of_day: int
    seconds: float  # recording: from the first call to the last return
    first: Latency | None  # calls that queued a first-of-day log
    duplicates: Latency | None  # calls answered "duplicate" throughout
    lag: Latency | None  # paced runs: how late calls started after their arrival time
    delivered: int | None  # None: delivery was off
    requests: int | None  # delivery requests the receiver answered
    backlog: int | None  # entries not yet delivered when recording ended
    drain_s: float | None  # from the end of recording until all was delivered
    delivery_s: float | None  # from the start of recording until all was delivered
    timeline: Timeline = attrs.field(repr=False)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def first_of_day_per_s(self) -> float:
        return self.first_of_day / self.seconds if self.seconds > 0 else 0.0

    @property
    def delivery_per_s(self) -> float | None:
        """Entries delivered per second from the start of recording until the outbox was
        empty (the receiver's rate when a backlog built up, else recording's)."""
        if self.delivered is None or not self.delivery_s:
            return None
        return self.delivered / self.delivery_s


@attrs.frozen
class NaiveResult:
    """The naive hand-written logger, one thread, per event (`minlog.bench.baselines`)."""

    events: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@attrs.frozen
class ProbeResult:
    """The per-event durable cost: first-of-day ``record()`` calls (one thread, no
    delivery) against bare one-row INSERT+COMMITs on the same kind of store, interleaved
    in blocks so that both see the same machine."""

    record: Latency
    commit: Latency

    @property
    def ratio(self) -> float:
        """What a first-of-day ``record()`` costs in bare commits (p50 against p50)."""
        return self.record.p50_us / self.commit.p50_us if self.commit.p50_us else math.inf


@attrs.frozen
class MemoryResult:
    """Memory per hot key (`minlog.bench.memory`), and what the workload needs."""

    keys: int
    rss_bytes_per_key: float
    traced_bytes_per_key: float
    hot_days: int
    first_of_day: int  # the workload's first-of-day logs (keys a day)

    @property
    def hot_window_bytes(self) -> float:
        """The workload's hot window (``hot_days`` days of its keys) at the RSS figure."""
        return self.rss_bytes_per_key * self.first_of_day * self.hot_days


@attrs.frozen
class Requirements:
    """Thresholds: a measured figure that misses one fails the benchmark. None: not
    checked. ``p99_ms`` applies to both kinds of call of the paced run (the flat-out run
    when there is no paced run); the throughput figures to the flat-out run."""

    events_per_s: float | None = None
    first_of_day_per_s: float | None = None
    p99_ms: float | None = None
    vs_naive: float | None = None
    delivery_per_s: float | None = None
    bytes_per_key: float | None = None  # at most (RSS)
    first_of_day_vs_commit: float | None = None  # at most (p50 record / p50 bare commit)


@attrs.frozen
class Check:
    """One threshold against its measured figure."""

    name: str  # the option: "events_per_s", ...
    what: str  # what was measured, in words
    measured: float | None  # None: not measured in this run (a miss)
    limit: float
    at_most: bool
    unit: str

    @property
    def ok(self) -> bool:
        if self.measured is None or math.isnan(self.measured):
            return False
        return self.measured <= self.limit if self.at_most else self.measured >= self.limit


@attrs.frozen
class BenchResult:
    """Everything one benchmark measured."""

    environment: dict[str, Any]
    setup: dict[str, Any]  # the workload, store, receiver, feed and options
    runs: tuple[RunResult, ...]
    naive: NaiveResult | None
    probe: ProbeResult | None
    memory: MemoryResult | None
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when every check is met."""
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def run(self, name: str) -> RunResult | None:
        return next((r for r in self.runs if r.name == name), None)

    @property
    def vs_naive(self) -> float | None:
        """The flat-out run's events/s over the naive logger's, same run."""
        flat = self.run("flat-out")
        if flat is None or self.naive is None or not self.naive.events_per_s:
            return None
        return flat.events_per_s / self.naive.events_per_s

    def ratios(self) -> dict[str, float | None]:
        """The same-run ratios (independent of the machine's speed)."""
        return {"vs_naive": self.vs_naive,
                "first_of_day_vs_commit": None if self.probe is None else self.probe.ratio}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``minlog bench --json``)."""
        def run(r: RunResult) -> dict[str, Any]:
            d = attrs.asdict(r)
            d.update(events_per_s=r.events_per_s, first_of_day_per_s=r.first_of_day_per_s,
                     delivery_per_s=r.delivery_per_s)
            return d

        return {
            "ok": self.ok,
            "environment": self.environment,
            "setup": self.setup,
            "runs": [run(r) for r in self.runs],
            "naive": None if self.naive is None else {
                **attrs.asdict(self.naive), "events_per_s": self.naive.events_per_s},
            "probe": None if self.probe is None else {
                **attrs.asdict(self.probe), "ratio": self.probe.ratio},
            "memory": None if self.memory is None else {
                **attrs.asdict(self.memory), "hot_window_bytes": self.memory.hot_window_bytes},
            "ratios": self.ratios(),
            "latency_bins_us": list(BINS_US),
            "checks": [{**attrs.asdict(c), "ok": c.ok} for c in self.checks],
        }


def checks(req: Requirements, result: BenchResult) -> tuple[Check, ...]:
    """The checks ``req`` asks for, against ``result`` (whose own checks are ignored)."""
    flat = result.run("flat-out")
    paced = result.run("paced")
    out: list[Check] = []

    def add(name: str, what: str, measured: float | None, unit: str,
            at_most: bool = False) -> None:
        limit = getattr(req, name)
        if limit is not None:
            out.append(Check(name, what, measured, float(limit), at_most, unit))

    add("events_per_s", "events/s, flat-out", None if flat is None else flat.events_per_s,
        "events/s")
    add("first_of_day_per_s", "first-of-day logs/s, flat-out",
        None if flat is None else flat.first_of_day_per_s, "logs/s")
    timed = paced or flat
    if req.p99_ms is not None:
        where = "paced" if paced else "flat-out"
        for label, lat in (("first-of-day", timed and timed.first),
                           ("duplicate", timed and timed.duplicates)):
            out.append(Check("p99_ms", f"p99 of {label} calls, {where}",
                             None if not lat else lat.p99_us / 1000.0, req.p99_ms, True, "ms"))
    add("vs_naive", "events/s over the naive logger's, same run", result.vs_naive, "x")
    add("delivery_per_s", "delivery entries/s, flat-out",
        None if flat is None else flat.delivery_per_s, "entries/s")
    memory, probe = result.memory, result.probe
    add("bytes_per_key", "memory per hot key (RSS)",
        None if memory is None else memory.rss_bytes_per_key, "bytes", at_most=True)
    add("first_of_day_vs_commit", "first-of-day record() p50 in bare INSERT+COMMITs",
        None if probe is None else probe.ratio, "x", at_most=True)
    return tuple(out)
