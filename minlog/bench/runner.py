"""`run`: the morning peak through the library, flat-out and paced, with its baselines.

The order of one run: build the workload (not timed) -> the naive logger and the morning
flat-out (every caller thread as fast as it can), alternating for ``rounds`` rounds, the
round with the median ratio reported -> the morning paced at an arrival rate -> the per-event probe
(first-of-day ``record()`` against bare commits, interleaved in blocks) -> memory per hot
key (fresh processes). Every measurement gets a fresh store (`minlog.bench.target`).

Each call is timed with ``time.perf_counter_ns`` in the calling thread. The library's
clock is a `ShiftedClock` set to a minute after the workload's morning on its fixed day,
running at real speed (leases and retries come due as in production), so the benchmark
gives the same answers on any date.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import attrs

import minlog
from minlog.bench import baselines
from minlog.bench.config import BenchConfig
from minlog.bench.memory import measure as measure_memory
from minlog.bench.result import (
    BenchResult,
    Latency,
    MemoryResult,
    NaiveResult,
    ProbeResult,
    RunResult,
    Timeline,
    checks,
    latency,
)
from minlog.bench.target import Places
from minlog.bench.workload import Prepared, describe, first_accesses, hot_set_events, prepare
from minlog.client.facade import MinLog
from minlog.core.clock import SYSTEM_CLOCK, ShiftedClock, utc_now
from minlog.core.ledger import DEFAULT_HOT_DAYS
from minlog.core.model import Access
from minlog.errors import MinlogError
from minlog.minlog2 import BatchResult, MemoryTransport, Minlog2Transport, Transport
from minlog.minlog2.registration import Registration

__all__ = ["run"]

SYSTEM_NAME = "Bench EOJ"
CVR = "29189846"
KEY = bytes(range(32))  # the benchmark's own master secret (its stores are thrown away)
#: A paced caller sleeps only when it is this many ns early (a shorter sleep overshoots):
#: calls start at most 0.1 ms before their arrival time.
_SLEEP_AT_LEAST = 100_000
MEMORY_KEYS_AT_LEAST = 100_000
PROBE_BLOCKS = 10

Say = Callable[[str], None]


def run(config: BenchConfig, progress: Say | None = None) -> BenchResult:
    """Run the benchmark ``config`` describes; ``progress`` hears what it is doing."""
    say = progress or (lambda _: None)
    say(f"building the morning peak ({config.workload.employees:,} care workers) ...")
    prepared = prepare(config.workload, config.threads)
    block = max(10, config.probe // PROBE_BLOCKS)
    probing = (hot_set_events(block * (PROBE_BLOCKS + 1), config.workload) if config.probe
               else [])
    # A minute after every event the runs record, on the workload's day.
    clock_at = max([prepared.clock_at, *(a.at.timestamp() + 60 for a in probing)])
    clock = ShiftedClock(clock_at)
    with Places(config.target, force=config.force, keep=config.keep, schema=config.schema,
                durability=config.durability) as places, contextlib.ExitStack() as stack:
        transports = _transports(config, clock, stack)
        naives: list[NaiveResult] = []
        flats: list[RunResult] = []
        for k in range(config.rounds):  # alternating, so that both see the same machine
            of = f" (round {k + 1} of {config.rounds})" if config.rounds > 1 else ""
            if config.naive:
                say(f"naive logger: one SQLite commit per event, one thread{of} ...")
                naives.append(_naive(places, prepared, clock))
            say(f"the morning flat-out: {_feed(config)}{of} ...")
            flats.append(_morning("flat-out", config, places, prepared, clock, transports,
                                  None))
        pick = _median_round(flats, naives)
        naive = naives[pick] if naives else None
        flat = flats[pick]
        runs = [flat]
        if config.paced:
            rate = config.rate or max(1.0, flat.events_per_s / 2)
            part = _first_part(prepared, max(1, int(rate * config.paced_seconds)))
            say(f"the morning paced at {rate:,.0f} events/s ({len(part.events):,} events) ...")
            runs.append(_morning("paced", config, places, part, clock, transports, rate))
        probe = None
        if config.probe:
            say(f"per-event probe: {config.probe:,} first-of-day record() calls against "
                "bare commits ...")
            probe = _probe(places, probing, block, clock)
        memory = None
        keys = (max(prepared.first_of_day, MEMORY_KEYS_AT_LEAST)
                if config.memory_keys is None else config.memory_keys)
        if keys:
            say(f"memory per hot key: {keys:,} keys in fresh processes ...")
            m = measure_memory(keys, places.folder)
            memory = MemoryResult(keys, m["rss_bytes_per_key"], m["traced_bytes_per_key"],
                                  DEFAULT_HOT_DAYS, prepared.first_of_day)
        setup = {**_setup(config, prepared, places, clock_at),
                 "rounds": _rounds(flats, naives, pick)}
    result = BenchResult(_environment(), setup, tuple(runs), naive, probe, memory, ())
    return attrs.evolve(result, checks=checks(config.requirements, result))


def _median_round(flats: list[RunResult], naives: list[NaiveResult]) -> int:
    """The round to report: the one with the median ratio to its own naive run (the lower
    median for an even count), or the median flat-out rate without naive runs. A naive run
    and the flat-out run right after it see the same machine; the median round is the
    least moved by other load in either direction."""
    if naives:
        key = [f.events_per_s / n.events_per_s for f, n in zip(flats, naives, strict=True)]
    else:
        key = [f.events_per_s for f in flats]
    order = sorted(range(len(key)), key=key.__getitem__)
    return order[(len(order) - 1) // 2]


def _rounds(flats: list[RunResult], naives: list[NaiveResult], pick: int
            ) -> dict[str, Any]:
    """Every round's figures, and which one is reported (1-based)."""
    return {"rounds": len(flats), "reported": pick + 1,
            "flat_out_events_per_s": [r.events_per_s for r in flats],
            "naive_events_per_s": [r.events_per_s for r in naives],
            "vs_naive": [f.events_per_s / n.events_per_s
                         for f, n in zip(flats, naives, strict=True)] if naives else []}


def _feed(config: BenchConfig) -> str:
    per = "per event" if config.feed == "record" else f"{config.batch:,} events per call"
    return f"{config.feed} ({per}) from {config.threads} thread(s)"


# --------------------------------------------------------------------------- delivery


class _Counting:
    """A transport that counts what the receiver accepted, and when."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        version = getattr(inner, "version", None)
        if isinstance(version, str):
            self.version = version
        self.sends: list[tuple[int, int]] = []  # (perf_counter_ns, entries accepted)
        self.accepted = 0

    def send(self, registrations: Sequence[Registration]) -> BatchResult:
        result = self.inner.send(registrations)
        n = (result.number_added if result.number_added is not None
             else len(registrations) - len(result.failed))
        self.sends.append((time.perf_counter_ns(), n))
        self.accepted += n
        return result

    def close(self) -> None:
        self.inner.close()


def _transports(config: BenchConfig, clock: ShiftedClock, stack: contextlib.ExitStack
                ) -> Callable[[], _Counting]:
    """A factory of fresh transports to the run's receiver (started here)."""
    if config.receiver == "memory" or not config.delivery:
        return lambda: _Counting(MemoryTransport())
    from minlog.bench.receiver import Receiver
    from minlog.testing.certs import make_test_certificate

    receiver = stack.enter_context(Receiver(CVR, clock.time()))
    p12, password = make_test_certificate(CVR, "Benchkommune", clock=clock)
    return lambda: _Counting(Minlog2Transport(
        service_url=receiver.service_url, sts_url=receiver.sts_url,
        credentials=(p12, password), cvr=CVR, system_name=SYSTEM_NAME,
        care_provider_name="Benchkommune", clock=clock))


# --------------------------------------------------------------------------- the morning


@attrs.define
class _Calls:
    """What one caller thread measured."""

    ends: array[int] = attrs.field(factory=lambda: array("q"))
    took: array[int] = attrs.field(factory=lambda: array("q"))
    first: bytearray = attrs.field(factory=bytearray)  # 1: the call queued a first-of-day log
    sizes: array[int] = attrs.field(factory=lambda: array("l"))  # events per call
    lags: array[int] = attrs.field(factory=lambda: array("q"))
    firsts: int = 0
    error: BaseException | None = None


def _calls_of(config: BenchConfig, prepared: Prepared, share: list[int]
              ) -> list[tuple[int, list[Access]]]:
    """One thread's calls: (arrival index of the call's last event, its accesses)."""
    events = prepared.events
    size = 1 if config.feed == "record" else config.batch
    share = [i for i in share if i < len(events)]
    return [(share[min(i + size, len(share)) - 1], [events[j] for j in share[i : i + size]])
            for i in range(0, len(share), size)]


def _caller(log: MinLog, config: BenchConfig, calls: list[tuple[int, list[Access]]],
            rate: float | None, start: threading.Barrier, t0: list[int], out: _Calls) -> None:
    clock = time.perf_counter_ns
    record, record_many = log.record, log.record_many
    per_event = config.feed == "record"
    step = 0.0 if rate is None else 1e9 / rate
    ends, took, first, sizes, lags = out.ends, out.took, out.first, out.sizes, out.lags
    firsts = due = 0
    try:
        start.wait()
        begin = t0[0]
        for due_index, accesses in calls:
            if rate is not None:
                due = begin + int(due_index * step)
                ahead = due - clock()
                if ahead > _SLEEP_AT_LEAST:
                    time.sleep(ahead / 1e9)
            s = clock()
            new = (1 if record(accesses[0]) else 0) if per_event else sum(record_many(accesses))
            e = clock()
            if rate is not None:
                lags.append(s - due)
            ends.append(e)
            took.append(e - s)
            first.append(1 if new else 0)
            sizes.append(len(accesses))
            firsts += new
    except BaseException as e:  # reported by the main thread
        out.error = e
    out.firsts = firsts


def _morning(name: str, config: BenchConfig, places: Places, prepared: Prepared,
             clock: ShiftedClock, transports: Callable[[], _Counting], rate: float | None
             ) -> RunResult:
    target, options = places.store(name)
    transport = transports()
    log = MinLog.open(target, transport=transport, system_name=SYSTEM_NAME, key=KEY,
                      store_options=options, clock=clock, rate_limit=None,
                      batch_size=config.batch_size, delivery_threads=config.delivery_threads,
                      start_worker=config.delivery, exit_timeout=0.0)
    try:
        plans = [_calls_of(config, prepared, share) for share in prepared.shares]
        outs = [_Calls() for _ in plans]
        t0 = [0]
        start = threading.Barrier(len(plans) + 1,
                                  action=lambda: t0.__setitem__(0, time.perf_counter_ns()))
        threads = [threading.Thread(target=_caller, name=f"bench-caller-{k}", daemon=True,
                                    args=(log, config, plan, rate, start, t0, out))
                   for k, (plan, out) in enumerate(zip(plans, outs, strict=True))]
        for t in threads:
            t.start()
        start.wait()
        for t in threads:
            t.join()
        for out in outs:
            if out.error is not None:
                raise out.error
        ended = max((max(o.ends) for o in outs if o.ends), default=t0[0])
        firsts = sum(o.firsts for o in outs)
        if firsts != prepared.first_of_day:
            raise MinlogError(f"the library answered {firsts:,} first-of-day logs where the "
                              f"morning holds {prepared.first_of_day:,}")
        backlog = drain_s = delivery_s = None
        drained_at = ended
        if config.delivery:
            counts = log.store.counts()
            backlog = counts.pending + counts.in_flight
            if log.flush(timeout=config.drain_timeout):
                drained_at = time.perf_counter_ns()
                drain_s = (drained_at - ended) / 1e9
                delivery_s = (drained_at - t0[0]) / 1e9
            else:
                drained_at = time.perf_counter_ns()
    finally:
        log.close(timeout=0 if not config.delivery else 10)
    delivered = transport.accepted if config.delivery else None
    return RunResult(
        name=name, feed=config.feed, threads=config.threads, rate=rate,
        events=len(prepared.events), first_of_day=firsts, seconds=(ended - t0[0]) / 1e9,
        first=_latency(outs, want_first=True), duplicates=_latency(outs, want_first=False),
        lag=latency([x for o in outs for x in o.lags]) if rate is not None else None,
        delivered=delivered, requests=len(transport.sends) if config.delivery else None,
        backlog=backlog, drain_s=drain_s, delivery_s=delivery_s,
        timeline=_timeline(outs, transport.sends, t0[0], drained_at))


def _first_part(prepared: Prepared, n: int) -> Prepared:
    """The morning's first ``n`` events (all of it when it has no more)."""
    if n >= len(prepared.events):
        return prepared
    events = prepared.events[:n]
    return attrs.evolve(prepared, events=events, first_of_day=len(first_accesses(events)))


def _latency(outs: list[_Calls], *, want_first: bool) -> Latency | None:
    flag = 1 if want_first else 0
    return latency([t for o in outs for t, f in zip(o.took, o.first, strict=True) if f == flag])


def _timeline(outs: list[_Calls], sends: list[tuple[int, int]], t0: int, end: int
              ) -> Timeline:
    span = max(end - t0, 1) / 1e9
    bucket = max(0.05, span / 100)
    n = int(span / bucket) + 1
    events, delivered = [0] * n, [0] * n
    for o in outs:
        for at, size in zip(o.ends, o.sizes, strict=True):
            events[min(n - 1, int((at - t0) / 1e9 / bucket))] += size
    for at, count in sends:
        delivered[min(n - 1, max(0, int((at - t0) / 1e9 / bucket)))] += count
    return Timeline(round(bucket, 4), tuple(events), tuple(delivered))


# --------------------------------------------------------------------------- baselines


def _naive(places: Places, prepared: Prepared, clock: ShiftedClock) -> NaiveResult:
    conn = baselines.naive_open(places.file("naive.sqlite"), places.synchronous)
    try:
        started = time.perf_counter_ns()
        new = baselines.naive_run(conn, prepared.events, SYSTEM_NAME, clock)
        seconds = (time.perf_counter_ns() - started) / 1e9
    finally:
        conn.close()
    if new != prepared.first_of_day:  # pragma: no cover - the baseline is wrong
        raise MinlogError("the naive logger's answers differ from the morning's")
    return NaiveResult(len(prepared.events), seconds)


def _probe(places: Places, accesses: list[Access], block: int, clock: ShiftedClock
           ) -> ProbeResult:
    """First-of-day ``record()`` calls and bare commits, alternating in blocks (after one
    block of each to warm up), on fresh stores of the target's kind."""
    if places.kind == "postgres":
        bare = baselines.BareCommit.open_postgres(places.target, places.schema(),
                                                  places.synchronous_commit)
    else:
        bare = baselines.BareCommit.open_sqlite(places.file("commit.sqlite"), places.synchronous)
    target, options = places.store("probe")
    log = MinLog.open(target, transport=MemoryTransport(), system_name=SYSTEM_NAME, key=KEY,
                      store_options=options, clock=clock, rate_limit=None, fill_wait=0.0,
                      start_worker=False, exit_timeout=0.0)
    records: list[int] = []
    commits: list[int] = []
    try:
        pc = time.perf_counter_ns
        record, commit = log.record, bare.commit
        for b in range(PROBE_BLOCKS + 1):
            took = [commit() for _ in range(block)]
            if b:
                commits.extend(took)
            for access in accesses[b * block : (b + 1) * block]:
                s = pc()
                new = record(access)
                e = pc()
                if not new:  # pragma: no cover - distinct accesses
                    raise MinlogError("a probe access was answered as a duplicate")
                if b:
                    records.append(e - s)
    finally:
        log.close(timeout=0)
        bare.close()
    rec, com = latency(records), latency(commits)
    assert rec is not None
    assert com is not None
    return ProbeResult(rec, com)


# --------------------------------------------------------------------------- description


def _setup(config: BenchConfig, prepared: Prepared, places: Places, clock_at: float
           ) -> dict[str, Any]:
    receiver = ("none (delivery off)" if not config.delivery
                else "MemoryTransport" if config.receiver == "memory"
                else "FakeNSP over HTTP on loopback, in its own process (DGWS ID cards)")
    return {
        "workload": {**describe(config.workload), "events": len(prepared.events),
                     "first_of_day": prepared.first_of_day,
                     "duplicate_share": prepared.duplicates / len(prepared.events),
                     "busiest_minute_per_s": prepared.busiest_per_s},
        "clock_starts_at": utc_now(ShiftedClock(clock_at)).isoformat(timespec="seconds"),
        "store": places.describe(),
        "kind": places.kind,
        "feed": config.feed, "threads": config.threads,
        "batch": config.batch if config.feed == "record_many" else None,
        "delivery": {"worker": config.delivery, "receiver": receiver,
                     "delivery_threads": config.delivery_threads,
                     "batch_size": config.batch_size, "rate_limit": None,
                     "fill_wait": 0.0},
        "probe_calls": config.probe,
        "requirements": attrs.asdict(config.requirements),
    }


def _environment() -> dict[str, Any]:
    return {
        "minlog": minlog.__version__, "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version, "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "when": utc_now(SYSTEM_CLOCK).isoformat(timespec="seconds"),
    }
