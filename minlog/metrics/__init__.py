"""Metrics of a `MinLog`: one snapshot API, a Prometheus text endpoint, OpenTelemetry.

::

    import minlog.metrics

    minlog.metrics.collect(log)            # [MetricFamily(...), ...]: the one snapshot
    minlog.metrics.render_prometheus(log)  # bytes in Prometheus's text format
    minlog.metrics.wsgi_app(log)           # a WSGI app serving /metrics
    server = minlog.metrics.serve(log, 9464)   # standalone, on a daemon thread

    from minlog.metrics import otel        # pip install 'minlog[otel]'
    otel.instrument(log, meter_provider)

`collect` reads the store's outbox totals (shared by every process on it), this
process's counters (recording, delivery, ID cards: `minlog.delivery.counters`) and a few
settings into the families of `CATALOGUE`; both exporters build on it and nothing else.
Families about a municipality carry a ``tenant`` label (its CVR; ``""`` for a single
one). ``docs/observability.md`` lists the families and how to alert on them.
"""

from minlog.metrics.families import (
    CATALOGUE,
    FamilySpec,
    MetricFamily,
    Sample,
    check_families,
    collect,
)
from minlog.metrics.prometheus import (
    CONTENT_TYPE,
    METRICS_PATH,
    MetricsHandler,
    MetricsServer,
    render_prometheus,
    respond,
    serve,
    wsgi_app,
)

__all__ = [
    "CATALOGUE",
    "CONTENT_TYPE",
    "METRICS_PATH",
    "FamilySpec",
    "MetricFamily",
    "MetricsHandler",
    "MetricsServer",
    "Sample",
    "check_families",
    "collect",
    "render_prometheus",
    "respond",
    "serve",
    "wsgi_app",
]
