"""`Worker`: delivery rounds on daemon threads, until stopped.

``wake()`` after new work; the threads also poll every ``poll`` seconds, since other
processes may add work to a shared store. While due work is held back (batches filling,
tenants at their rate limits: `StepResult.held`), new work does not wake them: the next
round comes when the schedule says, or within ``poll`` seconds, so that recording does
not make the delivery threads ask the store once per log; ``hurry()`` (``flush``) wakes
them anyway. Store errors are logged, kept in the
deliverer's ``last_error`` and retried after a pause: the worker never dies of them.
Waiting uses real time (`threading.Event`); the rounds themselves read the injected clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from minlog.delivery.deliverer import Deliverer, StepResult
from minlog.events import emit, redact

__all__ = ["Worker"]


class Worker:
    """Runs `Deliverer.step` on a daemon thread until stopped.

    ``wake()`` after new work; the thread also polls every ``poll`` seconds, since other
    processes may add work to a shared store. Store errors are logged, kept in
    ``last_error`` and retried after a pause: the worker never dies of them.
    """

    def __init__(self, deliverer: Deliverer, *, poll: float = 1.0, threads: int = 1,
                 on_step: Callable[[StepResult], None] | None = None) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.deliverer = deliverer
        self.poll = poll
        self.threads = threads
        self.on_step = on_step
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def start(self) -> None:
        with self._start_lock:
            if self.running:
                return
            self._stop.clear()
            self._threads = [
                threading.Thread(target=self._run, name=f"minlog-delivery-{i}", daemon=True)
                for i in range(self.threads)
            ]
            for t in self._threads:
                t.start()

    def wake(self) -> None:
        """New work: look at once, unless due work is held back (then within ``poll``)."""
        self._wake.set()

    def hurry(self) -> None:
        """Look at once, even while due work is held back (``flush``)."""
        self._hurry.set()
        self._wake.set()

    def stop(self, timeout: float | None) -> bool:
        """Ask the thread to stop after its current step; True when it has stopped."""
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self.running

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.deliverer.step()
                if self.on_step is not None:
                    self.on_step(result)
            except Exception as exc:
                self.deliverer.last_error = redact(f"{type(exc).__name__}: {exc}")
                emit("step_failed", "delivery step failed; retrying: %s",
                     self.deliverer.last_error, error=type(exc).__name__)
                result = StepResult(wait=self.poll)
            if result.claimed:
                continue
            wait = self.poll if result.wait is None else min(result.wait, self.poll)
            if wait > 0:
                event = self._hurry if result.held else self._wake
                event.wait(wait)
                self._hurry.clear()
                self._wake.clear()
