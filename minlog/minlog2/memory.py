"""`MemoryTransport`: a transport that keeps what it is sent, for tests and the demo."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from minlog.errors import DeliveryError
from minlog.minlog2.registration import Registration
from minlog.minlog2.transport import BatchResult, EntryFailure

__all__ = ["MemoryTransport"]


class MemoryTransport:
    """Delivers into the ``delivered`` list (thread-safe).

    ``reject`` may name entries to refuse: a callable returning a fault code for a
    registration it refuses, or None to accept it. ``fail_next(error, times)`` makes the
    next sends raise ``error`` (for outage tests). ``batches`` records each batch's size.
    """

    def __init__(self, reject: Callable[[Registration], str | None] | None = None) -> None:
        self.delivered: list[Registration] = []
        self.batches: list[int] = []
        self.reject = reject
        self.closed = False
        self._lock = threading.Lock()
        self._failures: list[DeliveryError] = []

    def fail_next(self, error: DeliveryError, times: int = 1) -> None:
        """Raise ``error`` from the next ``times`` calls to `send`."""
        with self._lock:
            self._failures.extend([error] * times)

    def send(self, registrations: Sequence[Registration]) -> BatchResult:
        with self._lock:
            if self._failures:
                raise self._failures.pop(0)
            failed: list[EntryFailure] = []
            for r in registrations:
                code = self.reject(r) if self.reject is not None else None
                if code is None:
                    self.delivered.append(r)
                else:
                    failed.append(EntryFailure(r.sequence_number or "", code, "rejected"))
            self.batches.append(len(registrations))
            return BatchResult(tuple(failed), len(registrations) - len(failed))

    def close(self) -> None:
        self.closed = True
