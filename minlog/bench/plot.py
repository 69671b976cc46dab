"""The picture of a benchmark: latency distributions and throughput over time.

Needs matplotlib, the ``plot`` extra: ``pip install 'minlog[plot]'``. Only this module
imports it, and only when `save` is called.
"""

from __future__ import annotations

import os
from typing import Any

from minlog.bench.result import BINS_US, BenchResult
from minlog.errors import ConfigurationError

__all__ = ["INSTALL_HINT", "available", "save"]

INSTALL_HINT = "the picture needs matplotlib: pip install 'minlog[plot]'"


def available() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def save(result: BenchResult, path: str | os.PathLike[str]) -> None:
    """Draw ``result`` into ``path`` (PNG, SVG or PDF, by its suffix)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigurationError(INSTALL_HINT) from None
    runs = result.runs
    fig, axes = plt.subplots(2, max(1, len(runs)), figsize=(6.5 * max(1, len(runs)), 8),
                             squeeze=False)
    w = result.setup["workload"]
    fig.suptitle(f"minlog bench: {w['events']:,} events, {w['first_of_day']:,} first-of-day "
                 f"logs, {result.setup['feed']} from {result.setup['threads']} thread(s)")
    for col, run in enumerate(runs):
        title = "flat-out" if run.rate is None else f"paced at {run.rate:,.0f} events/s"
        ax: Any = axes[0][col]
        used = [0.5, BINS_US[0]]
        for label, lat in (("with a first-of-day log", run.first),
                           ("duplicates only", run.duplicates)):
            if lat is None:
                continue
            ax.stairs(lat.histogram, (0.5, *BINS_US), label=f"{label} (p99 {lat.p99_us:,.0f} µs)")
            filled = [i for i, n in enumerate(lat.histogram) if n]
            used += [(0.5, *BINS_US)[filled[0]], BINS_US[filled[-1]]]
        ax.set_xscale("log")
        ax.set_xlim(max(0.5, min(used) / 2), max(used) * 2)
        ax.set_xlabel("call latency (µs)")
        ax.set_ylabel("calls")
        ax.set_title(f"latency, {title}")
        ax.legend(fontsize="small")
        tl = run.timeline
        t = [i * tl.bucket_s for i in range(len(tl.events))]
        ax2: Any = axes[1][col]
        ax2.plot(t, [n / tl.bucket_s for n in tl.events], label="events recorded /s")
        if run.delivered is not None:
            ax2.plot(t, [n / tl.bucket_s for n in tl.delivered], label="entries delivered /s")
        ax2.set_xlabel("seconds from the start of recording")
        ax2.set_ylabel("per second")
        ax2.set_title(f"throughput, {title}")
        ax2.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)
