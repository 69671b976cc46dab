"""`table`: a `BenchResult` as the readable text ``minlog bench`` prints."""

from __future__ import annotations

from minlog.bench.result import BenchResult, Check, Latency, RunResult

__all__ = ["table"]


def _n(x: float) -> str:
    """A count or rate with thousands separators (no decimals above 100)."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.1f}"


def _us(x: float) -> str:
    """Microseconds, as ms from 1,000 µs up."""
    if x >= 1000:
        return f"{x / 1000:,.1f} ms"
    return f"{x:,.0f} µs" if x >= 100 else f"{x:.1f} µs"


def _lat(lat: Latency | None) -> str:
    if lat is None:
        return "-"
    return f"{_us(lat.p50_us)} / {_us(lat.p99_us)} / {_us(lat.max_us)}"


def _bytes(x: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= size:
            return f"{x / size:,.1f} {unit}"
    return f"{x:,.0f} bytes"


def _runs(runs: tuple[RunResult, ...], rounds: int) -> list[str]:
    heads = [("flat-out" if r.rate is None else f"paced at {_n(r.rate)}/s") for r in runs]
    if rounds > 1:
        heads[0] = f"flat-out, median of {rounds}"
    calls = "record() calls" if runs[0].feed == "record" else "record_many() calls"
    rows: list[tuple[str, list[str]]] = [
        ("events; first-of-day logs", [f"{r.events:,}; {r.first_of_day:,}" for r in runs]),
        ("events/s", [_n(r.events_per_s) for r in runs]),
        ("first-of-day logs/s", [_n(r.first_of_day_per_s) for r in runs]),
        ("recording took", [f"{r.seconds:,.2f} s" for r in runs]),
        (f"{calls} with a first-of-day log: p50 / p99 / max", [_lat(r.first) for r in runs]),
        (f"{calls}, duplicates only: p50 / p99 / max", [_lat(r.duplicates) for r in runs]),
    ]
    if any(r.lag is not None for r in runs):
        rows.append(("calls started late (paced): p50 / p99 / max",
                     ["-" if r.lag is None else _lat(r.lag) for r in runs]))
    if any(r.delivered is not None for r in runs):
        rows += [
            ("delivery entries/s (start of recording to drained)",
             ["-" if r.delivery_per_s is None else _n(r.delivery_per_s) for r in runs]),
            ("delivery requests; entries per request",
             ["-" if not r.requests or r.delivered is None else
              f"{r.requests:,}; {r.delivered / r.requests:,.1f}" for r in runs]),
            ("backlog when recording ended; drained in",
             ["-" if r.backlog is None else
              f"{r.backlog:,}; " + ("NOT drained" if r.drain_s is None else f"{r.drain_s:.2f} s")
              for r in runs]),
        ]
    width = max(len(label) for label, _ in rows)
    cols = [max(len(h), *(len(v[i]) for _, v in rows)) for i, h in enumerate(heads)]
    out = ["  " + " " * width + "  " + "  ".join(h.rjust(c) for h, c in zip(heads, cols,
                                                                            strict=True))]
    for label, values in rows:
        out.append("  " + label.ljust(width) + "  "
                   + "  ".join(v.rjust(c) for v, c in zip(values, cols, strict=True)))
    return out


def _check(c: Check) -> str:
    sign = "<=" if c.at_most else ">="
    got = "not measured" if c.measured is None else f"{c.measured:,.2f} {c.unit}"
    return (f"  {'ok    ' if c.ok else 'MISSED'} {c.what}: {got} (required {sign} "
            f"{c.limit:,.2f} {c.unit}; --require-{c.name.replace('_', '-')})")


def table(result: BenchResult) -> str:
    """The readable report."""
    s, env = result.setup, result.environment
    w = s["workload"]
    d = s["delivery"]
    lines = [
        f"minlog bench: a morning peak of {w['employees']:,} care workers visiting "
        f"{w['visits']} of {w['citizens']:,} citizens, {w['opens']:g} opens per visit",
        f"  {w['events']:,} events, {w['first_of_day']:,} first-of-day logs "
        f"({w['duplicate_share']:.1%} duplicates); its busiest minute: "
        f"{_n(w['busiest_minute_per_s'])} events/s",
        f"  day {w['day']} (the library's clock set to {s['clock_starts_at']} and running, "
        "whatever today is)",
        f"  store: {s['store']}",
        f"  feed: {s['feed']}" + (f" in calls of {s['batch']:,} events" if s["batch"] else
                                  " per event") + f", {s['threads']} caller thread(s)",
        "  delivery: " + (f"worker as in production, {d['delivery_threads']} thread(s), "
                          f"batches of {d['batch_size']} that fill, no rate limit "
                          f"(rate_limit=None: as fast as the receiver takes them); "
                          f"receiver: {d['receiver']}"
                          if d["worker"] else "off"),
        f"  minlog {env['minlog']}, {env['implementation']} {env['python']}, SQLite "
        f"{env['sqlite']}, {env['cpus']} CPUs, {env['platform']}",
        "",
    ]
    if result.runs:
        lines += [*_runs(result.runs, s["rounds"]["rounds"]), ""]
    flat = result.run("flat-out")
    if flat and w["busiest_minute_per_s"]:
        lines.append(f"  headroom: flat-out is {flat.events_per_s / w['busiest_minute_per_s']:,.0f}"
                     "x the busiest minute of this morning")
    if result.naive:
        ratio = "" if result.vs_naive is None else f"; minlog flat-out: {result.vs_naive:.2f}x"
        rounds = s["rounds"]
        best = ("" if rounds["rounds"] == 1 else
                f"; round {rounds['reported']} of {rounds['rounds']}, the median ratio; all: "
                + ", ".join(f"{x:.2f}x" for x in rounds["vs_naive"]))
        lines.append(f"  naive logger (one SQLite commit per event, one thread): "
                     f"{_n(result.naive.events_per_s)} events/s{ratio}{best}")
    if result.probe:
        p = result.probe
        lines.append(f"  first-of-day record(), one thread, no delivery: p50 {_us(p.record.p50_us)}"
                     f" = {p.ratio:.2f}x a bare INSERT+COMMIT on this store "
                     f"(p50 {_us(p.commit.p50_us)}; {p.record.calls:,} calls each, interleaved)")
    if result.memory:
        m = result.memory
        lines.append(f"  memory per hot key ({m.keys:,} keys, fresh process): "
                     f"{m.rss_bytes_per_key:,.0f} bytes RSS, {m.traced_bytes_per_key:,.0f} "
                     f"bytes traced; this morning's keys over {m.hot_days} hot days: "
                     f"{_bytes(m.hot_window_bytes)}")
    if result.checks:
        lines += ["", "checks:"] + [_check(c) for c in result.checks]
        missed = result.failed
        lines.append("result: every check met" if not missed else
                     f"result: {len(missed)} check(s) MISSED: "
                     + ", ".join(f"--require-{c.name.replace('_', '-')}" for c in missed))
    return "\n".join(lines) + "\n"
