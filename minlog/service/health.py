"""`HealthServer`: ``/healthz`` and ``/metrics`` of a `DeliveryService`, on a thread.

* ``GET /healthz``: 200 when the service ran a delivery round within its
  ``stale_after`` seconds, the store answers and it is not stopping; 503 otherwise. The
  body is JSON (`DeliveryService.health`): ``status`` (``ok`` or ``unavailable``),
  ``problems`` (``store``, ``no_recent_round``, ``stopping``), ``pending``,
  ``in_flight``, ``dead``, ``oldest_pending_age``, ``delivered``, ``last_error``,
  ``rounds``, ``last_round_age``. Counts and fault texts only, never a CPR number. Dead
  letters do not make it fail: they are an operator's matter (alert on
  ``minlog_outbox_dead``), not a reason to restart the worker.
* ``GET /metrics``: the Prometheus text of `minlog.metrics` (its `MetricsServer`, with a
  handler that answers ``/healthz`` too).

It listens on 127.0.0.1 unless told otherwise; port 0 picks a free port (``.port``).
"""

from __future__ import annotations

import json
from typing import Final

from minlog.metrics import METRICS_PATH, MetricsHandler, MetricsServer
from minlog.service.runner import DeliveryService

__all__ = ["HEALTH_PATH", "HealthServer"]

HEALTH_PATH: Final = "/healthz"


class _HealthHandler(MetricsHandler):
    service: DeliveryService

    def _answer(self) -> None:
        if self.path.split("?", 1)[0] != HEALTH_PATH or self.command not in ("GET", "HEAD"):
            super()._answer()
            return
        ok, report = self.service.health()
        body = (json.dumps(report) + "\n").encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _answer


class HealthServer(MetricsServer):
    """Serves ``service``'s health and metrics at ``url`` (``http://host:port``);
    ``close()`` stops it (also as a context manager)."""

    def __init__(self, service: DeliveryService, port: int, host: str = "127.0.0.1") -> None:
        handler = type("BoundHealthHandler", (_HealthHandler,),
                       {"log": service.log, "service": service})
        super().__init__(service.log, host, port, METRICS_PATH, handler=handler)
        self.url = f"http://{host}:{self.port}"
