"""`MemoryTransport`: a transport that keeps what it is sent, for tests and the demo."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from minlog.errors import DeliveryError
from minlog.minlog2.registration import Registration
from minlog.minlog2.transport import BatchResult, EntryFailure

__all__ = ["MemoryTransport"]


class MemoryTransport:
    """Delivers into memory (thread-safe): ``delivered`` lists the registrations received,
    in order, made from the batches only when it is read (so that keeping them costs the
    delivery worker nothing); ``count`` is how many; ``batches`` each batch's size.

    ``reject`` may name entries to refuse: a callable returning a fault code for a
    registration it refuses, or None to accept it. ``fail_next(error, times)`` makes the
    next sends raise ``error`` (for outage tests).
    """

    def __init__(self, reject: Callable[[Registration], str | None] | None = None) -> None:
        self.batches: list[int] = []
        self.count = 0
        self.reject = reject
        self.closed = False
        self._lock = threading.Lock()
        self._failures: list[DeliveryError] = []
        self._kept: list[Sequence[Registration]] = []
        self._delivered: list[Registration] = []

    @property
    def delivered(self) -> list[Registration]:
        """Every registration received, in order."""
        with self._lock:
            for batch in self._kept:
                self._delivered.extend(batch)
            self._kept.clear()
            return list(self._delivered)

    def fail_next(self, error: DeliveryError, times: int = 1) -> None:
        """Raise ``error`` from the next ``times`` calls to `send`."""
        with self._lock:
            self._failures.extend([error] * times)

    def send(self, registrations: Sequence[Registration]) -> BatchResult:
        with self._lock:
            if self._failures:
                raise self._failures.pop(0)
            self.batches.append(len(registrations))
            if self.reject is None:
                self._kept.append(registrations)
                self.count += len(registrations)
                return BatchResult((), len(registrations))
            failed: list[EntryFailure] = []
            kept: list[Registration] = []
            for r in registrations:
                code = self.reject(r)
                if code is None:
                    kept.append(r)
                else:
                    failed.append(EntryFailure(r.sequence_number or "", code, "rejected"))
            self._kept.append(kept)
            self.count += len(kept)
            return BatchResult(tuple(failed), len(kept))

    def after_fork(self) -> None:
        """In a forked child: a lock of its own (the child keeps what was received)."""
        self._lock = threading.Lock()

    def close(self) -> None:
        self.closed = True
