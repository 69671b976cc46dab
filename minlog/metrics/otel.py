"""OpenTelemetry metrics for a `MinLog` (``pip install 'minlog[otel]'``).

::

    from minlog.metrics import otel

    otel.instrument(log, meter_provider)   # or the global provider when omitted

registers one observable instrument per family of `minlog.metrics.CATALOGUE` on a meter
named ``minlog``: observable counters for the ``*_total`` families, observable gauges for
the rest, with the family's unit and help, and its labels as attributes (``tenant``,
``kind``, ``reason``, ...). The callbacks share one `minlog.metrics.collect` per
collection (a snapshot younger than ``max_age`` seconds, by the instance's clock, is
reused), so a collection costs one read of the store whatever the number of
instruments. Only this module imports ``opentelemetry``; the rest of ``minlog`` never does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from minlog import __version__
from minlog.client.facade import MinLog
from minlog.errors import ConfigurationError
from minlog.metrics.families import CATALOGUE, FamilySpec, MetricFamily, collect

try:
    from opentelemetry import metrics as _otel
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ConfigurationError(
        "OpenTelemetry metrics need opentelemetry-api: pip install 'minlog[otel]'") from e

__all__ = ["instrument"]


class _Snapshots:
    """One `collect` shared by the callbacks of a collection."""

    def __init__(self, log: MinLog, max_age: float) -> None:
        self.log = log
        self.max_age = max_age
        self._lock = threading.Lock()
        self._at: float | None = None
        self._families: dict[str, MetricFamily] = {}

    def family(self, name: str) -> MetricFamily:
        clock = self.log._clock
        with self._lock:
            now = clock.monotonic()
            if self._at is None or now - self._at > self.max_age:
                self._families = {f.name: f for f in collect(self.log)}
                self._at = now
            return self._families[name]


def instrument(log: MinLog, meter_provider: _otel.MeterProvider | None = None, *,
               max_age: float = 1.0) -> list[_otel.Asynchronous]:
    """Register ``log``'s metrics on ``meter_provider`` (default: the global one); returns
    the instruments. Each exporter collection reads ``log`` at most once per ``max_age``
    seconds."""
    provider = meter_provider or _otel.get_meter_provider()
    meter = provider.get_meter("minlog", __version__)
    snapshots = _Snapshots(log, max_age)
    instruments: list[_otel.Asynchronous] = []
    for spec in CATALOGUE:
        callback = _callback(snapshots, spec)
        make = (meter.create_observable_counter if spec.kind == "counter"
                else meter.create_observable_gauge)
        instruments.append(make(spec.otel_name, callbacks=[callback], unit=spec.unit,
                                description=spec.help))
    return instruments


def _callback(snapshots: _Snapshots, spec: FamilySpec
              ) -> _otel.CallbackT:
    def observe(options: _otel.CallbackOptions) -> Iterable[_otel.Observation]:
        family = snapshots.family(spec.name)
        return [_otel.Observation(s.value, dict(s.labels)) for s in family.samples]

    return observe
