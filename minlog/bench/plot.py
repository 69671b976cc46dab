"""The pictures of a benchmark (latency distributions and throughput over time) and of a
projected day (`save_projection`: logs per hour, backlog curves).

Needs matplotlib, the ``plot`` extra: ``pip install 'minlog[plot]'``. Only this module
imports it, and only when `save` or `save_projection` is called.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from minlog.bench.result import BINS_US, BenchResult
from minlog.errors import ConfigurationError

if TYPE_CHECKING:
    from minlog.delivery.projection import Projection

__all__ = ["INSTALL_HINT", "available", "save", "save_projection"]

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


def save_projection(result: Projection, path: str | os.PathLike[str], *,
                    most: int = 8) -> None:
    """Draw a `minlog.delivery.projection.Projection` into ``path``: the logs accepted
    per hour, and each municipality's backlog over the day (the ``most`` largest peaks
    named, the others in grey; those whose limit cannot carry the day in red)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        raise ConfigurationError(INSTALL_HINT) from None
    from minlog.delivery.projection import clock_text, limit_text

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True,
                                      gridspec_kw={"height_ratios": [1, 2]})
    ax: Any = top
    hours = [h + 0.5 for h in range(24)]
    ax.bar(hours, [sum(t.hourly[h] for t in result.tenants) for h in range(24)], width=0.9,
           color="#8fb3d9")
    ax.set_ylabel("first-of-day logs per hour")
    ax.set_title(f"minlog project: {result.source}", fontsize="medium")
    ax2: Any = bottom
    named = sorted(result.tenants, key=lambda t: (not t.carries, t.peak), reverse=True)[:most]
    t_axis = [i * result.step / 3600 for i in range(len(result.tenants[0].backlog))]
    for t in result.tenants:
        if t in named:
            continue
        ax2.plot(t_axis, t.backlog, color="#c8c8c8", linewidth=0.8)
    for t in named:
        label = (f"{t.tenant or '(single)'}: peak {t.peak:,} at {clock_text(t.peak_at)}, "
                 + ("carries" if t.carries else f"needs {limit_text(t.needed_limit)}"
                    if t.needed is not None else "cannot"))
        ax2.plot(t_axis, t.backlog, linewidth=1.6 if not t.carries else 1.0,
                 color="#c0392b" if not t.carries else None, label=label)
    ax2.axvline(24, color="black", linewidth=0.6, linestyle=":")
    ax2.set_xlim(0, 24)
    ax2.set_xticks(range(0, 25, 3))
    ax2.set_xlabel("local time (hours)")
    ax2.set_ylabel("backlog (logs accepted, not delivered)")
    ax2.set_title(f"batches of {result.batch_size:,}, fill wait {result.fill_wait:g} s, "
                  f"{result.request_seconds:g} s a request", fontsize="medium")
    for a in (ax, ax2):
        a.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax2.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)
