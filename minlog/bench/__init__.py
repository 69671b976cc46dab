"""Peak-load benchmarking with a vendor's own volumes: ``minlog bench`` and its Python API.

::

    from minlog.bench import BenchConfig, Requirements, run
    from minlog.testing.workload import MorningPeak

    result = run(BenchConfig("/var/lib/eoj/bench.sqlite",
                             workload=MorningPeak(employees=5000, citizens=75000),
                             threads=8, requirements=Requirements(p99_ms=5)))
    print(result.ok, result.run("flat-out").events_per_s)

See `BenchConfig` for what a run does, `BenchResult` for what it reports, and
``docs/performance.md`` for how to size an installation with it. The picture
(`minlog.bench.plot`) needs the ``plot`` extra (``pip install 'minlog[plot]'``); nothing
else here imports it.
"""

from minlog.bench.config import BenchConfig
from minlog.bench.result import (
    BenchResult,
    Check,
    Latency,
    MemoryResult,
    NaiveResult,
    ProbeResult,
    Requirements,
    RunResult,
    Timeline,
)
from minlog.bench.runner import run

__all__ = [
    "BenchConfig",
    "BenchResult",
    "Check",
    "Latency",
    "MemoryResult",
    "NaiveResult",
    "ProbeResult",
    "Requirements",
    "RunResult",
    "Timeline",
    "run",
]
