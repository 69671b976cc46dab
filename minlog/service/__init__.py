"""The delivery service: what ``minlog worker`` runs (a process for systemd or a container).

* `DeliveryService` (`minlog.service.runner`): delivery rounds of one `MinLog` on a
  thread until `stop`; a graceful stop finishes the round under way (its outcome
  recorded) or, past ``stop_timeout``, gives its leases back at once
  (`Store.release_leases`). Its `health` says whether it ran a round recently and the
  store answers.
* `HealthServer` (`minlog.service.health`): ``GET /healthz`` (200 or 503 with a JSON
  body of counts, never a CPR number) and ``GET /metrics`` (the Prometheus text of
  `minlog.metrics`) on loopback.

See docs/deployment.md.
"""

from minlog.service.health import HealthServer
from minlog.service.runner import DeliveryService

__all__ = ["DeliveryService", "HealthServer"]
