"""The keyword options of `MinLog` and `MinLog.open`: their names and types (`Options`),
and the check that refuses an unknown one (`check_options`), naming the option meant.

`minlog.tenants` checks an installation's options with the same `check_options`, so a
misspelt option in ``minlog.toml`` fails the same way as one given in code.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Final, TypedDict

from minlog.core.clock import Clock
from minlog.core.ledger import BeyondHorizon
from minlog.delivery.policy import RateLimit, RetryPolicy
from minlog.errors import ConfigurationError

__all__ = ["OPTION_NAMES", "Options", "check_options"]


class Options(TypedDict, total=False):
    """The keyword options of `MinLog` and `MinLog.open`, with their defaults:

    * ``schema_version``: ``"20250312"`` or ``"20230425"`` (default: the transport's
      ``version``, else ``"20250312"``); every access is held to that version's rules
      before it is stored.
    * ``hot_days`` (3): days held in memory (today and the days before it).
    * ``horizon_days`` (35): the dedup horizon; within it the answer is exact on every
      store, across processes and hosts. The store keeps the largest horizon any instance
      asked for, and never prunes inside it.
    * ``late_days`` (4): late days (inside the horizon, before the hot window) whose
      learned keys memory keeps.
    * ``beyond_horizon`` (``"deliver"``): an access older than the horizon is delivered
      (still deduplicated while the store holds its day) and counted in
      ``stats().beyond_horizon``; ``"refuse"`` makes it a `ValidationError`.
    * ``max_future_skew`` (300 s): how far after the clock an access may lie.
    * ``batch_size`` (500), ``retry`` (`RetryPolicy`), ``lease_seconds`` (120),
      ``delivery_threads`` (1), ``poll`` (1 s): delivery.
    * ``rate_limit`` (`RateLimit.guidance()`: 20 requests an hour): each tenant's limit,
      held for every process and host on the store (the store keeps the send times);
      None: no limit. ``tenant_limits`` (None): per-tenant overrides, by CVR (a value of
      None: that tenant has no limit); with ``tenants``, each tenant's own
      ``rate_limit`` unless ``tenant_limits`` names it.
    * ``fill_wait`` (600 s): a tenant's batch is sent once it is full (``batch_size``
      entries) or its oldest entry has waited this long, so that requests carry full
      batches; ``flush``, ``close`` and ``minlog drain`` do not wait for it. 0: send
      what is due at once.
    * ``retention_days`` (730): entries older than MinLog2 keeps logs are not sent; they
      become dead letters (``minlog:beyond-retention``).
    * ``exit_timeout`` (5 s): the final flush at interpreter exit or ``with`` exit.
    * ``clock`` (the system's): the one clock every part asks (`minlog.Clock`).
    * ``start_worker`` (True): deliver on background threads; False for processes that
      only record (a separate delivery process drains the store).
    * ``backlog_warning`` (3600 s): after delivery rounds, log a ``backlog`` warning when
      the oldest undelivered entry has waited longer than this (None: never).
    """

    schema_version: str | None
    hot_days: int
    horizon_days: int
    late_days: int
    beyond_horizon: BeyondHorizon
    max_future_skew: float
    batch_size: int
    retry: RetryPolicy | None
    rate_limit: RateLimit | None
    fill_wait: float
    tenant_limits: Mapping[str, RateLimit | None] | None
    lease_seconds: float
    retention_days: int
    poll: float
    delivery_threads: int
    exit_timeout: float
    clock: Clock
    start_worker: bool
    backlog_warning: float | None


#: The names of the keyword options (`Options`).
OPTION_NAMES: Final = Options.__optional_keys__ | Options.__required_keys__


def check_options(options: Mapping[str, object]) -> None:
    """Refuse an unknown option (a misspelt one, say) naming it and the option meant."""
    unknown = sorted(set(options) - OPTION_NAMES)
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise ConfigurationError(
        f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; the options "
        f"are {', '.join(sorted(OPTION_NAMES))}")
