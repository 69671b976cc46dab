"""`BenchConfig`: what one `minlog bench` run does (a frozen value; the CLI builds one)."""

from __future__ import annotations

import os
from typing import Literal

import attrs

from minlog.bench.result import Requirements
from minlog.errors import ConfigurationError
from minlog.store.base import DEFAULT_DURABILITY, Durability, durability
from minlog.testing.workload import MorningPeak

__all__ = ["BenchConfig", "Feed", "ReceiverKind"]

Feed = Literal["record", "record_many"]
ReceiverKind = Literal["fakensp", "memory"]


@attrs.frozen
class BenchConfig:
    """One benchmark run.

    * ``target``: a SQLite path (the disk to run on; the benchmark makes fresh files in a
      new folder beside it) or a ``postgresql://`` URL (fresh schemas); see
      `minlog.bench.target`. ``force`` goes on when the named store holds data (it is
      never written either way); ``keep`` leaves the benchmark's stores behind;
      ``schema``: the PostgreSQL schema checked for a live store; ``durability``: the
      library's stores' (`minlog.store.base.Durability`, default the library's own,
      ``"power"``), and the same for the naive logger and the bare commit.
    * ``workload``: the morning peak (`MorningPeak`) with the vendor's volumes.
    * ``threads`` caller threads, each ``record`` per event or ``record_many`` with
      ``batch`` events per call (``feed``).
    * Delivery as in production: the worker on ``delivery_threads`` threads, batches of
      ``batch_size`` that fill as in production (the default ``fill_wait``), **no rate
      limit** (``rate_limit=None``: full batches as fast as the receiver takes them, so
      that the library is measured; what is left at the end is flushed), to
      ``receiver`` (``"fakensp"``: the reference receiver over HTTP with DGWS ID cards, in
      its own process; ``"memory"``: `MemoryTransport`). ``delivery=False`` records only.
    * ``rounds``: the naive logger and the flat-out run alternate this many times, each
      in a fresh store; the round whose ratio of the two is the median is reported (a
      pair run back to back sees the same machine; the median round is the least moved
      by other load on a shared machine), every round's figures in ``setup["rounds"]``.
    * ``paced``: a second run with the calls paced at ``rate`` events/s (default: half the
      flat-out run's rate), over the morning's first ``rate * paced_seconds`` events;
      ``drain_timeout``: how long delivery may take after recording.
    * ``naive``: the naive logger's run; ``probe``: first-of-day ``record()`` calls
      measured against as many bare commits (0: none); ``memory_keys``: keys for the
      memory measurement (None: the workload's first-of-day logs, at least 100,000; 0:
      none).
    * ``requirements``: thresholds; a miss makes ``BenchResult.ok`` False.
    """

    target: str | os.PathLike[str]
    workload: MorningPeak = attrs.field(factory=MorningPeak)
    threads: int = 1
    feed: Feed = "record"
    batch: int = 1000
    delivery: bool = True
    receiver: ReceiverKind = "fakensp"
    delivery_threads: int = 1
    batch_size: int = 500
    rounds: int = 1
    paced: bool = True
    rate: float | None = None
    paced_seconds: float = 30.0
    drain_timeout: float = 600.0
    naive: bool = True
    probe: int = 2000
    memory_keys: int | None = None
    force: bool = False
    keep: bool = False
    schema: str = "minlog"
    durability: Durability = DEFAULT_DURABILITY
    requirements: Requirements = attrs.field(factory=Requirements)

    def __attrs_post_init__(self) -> None:
        if self.feed not in ("record", "record_many"):
            raise ConfigurationError("feed: 'record' or 'record_many'")
        if self.receiver not in ("fakensp", "memory"):
            raise ConfigurationError("receiver: 'fakensp' or 'memory'")
        for name in ("threads", "batch", "delivery_threads", "batch_size", "rounds"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name}: must be at least 1")
        if self.rate is not None and not self.rate > 0:
            raise ConfigurationError("rate: must be above 0 events/s")
        if self.probe < 0 or (self.memory_keys is not None and self.memory_keys < 0):
            raise ConfigurationError("probe, memory_keys: must not be negative")
        if self.probe and self.probe < 100:
            raise ConfigurationError("probe: at least 100 calls (or 0 for none)")
        if not self.drain_timeout > 0 or not self.paced_seconds > 0:
            raise ConfigurationError("drain_timeout, paced_seconds: must be above 0 seconds")
        durability(self.durability)
