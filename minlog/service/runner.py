"""`DeliveryService`: delivery rounds of one `MinLog` on a thread, until stopped.

The `MinLog` is opened with ``start_worker=False``: the service drives its rounds
(`MinLog.step`, with the day's store upkeep after each) on one thread of its own, so that
it knows when the last round ran (`health`) and can stop between rounds.

Stopping (`stop`, then `shutdown`) is graceful: no new batch is claimed, and the round
under way is finished, its outcome recorded (acknowledged, rescheduled or made dead
letters). When that takes longer than ``stop_timeout`` seconds (a receiver that does not
answer), the entries this instance leased are given back at once
(`Store.release_leases`) and the service stops anyway: they are never left to run out
their lease. A second `stop` skips the wait.

Waiting and staleness use real time (`time.monotonic`), as `minlog.delivery.worker`
does; the rounds themselves read the `MinLog`'s clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from minlog.client.facade import MinLog
from minlog.delivery.deliverer import StepResult
from minlog.errors import ClosedError
from minlog.events import emit, redact

__all__ = ["DeliveryService"]


class DeliveryService:
    """Delivery rounds of ``log`` on a thread (see the module docstring).

    ``poll``: seconds between rounds that found nothing to do (other processes may add
    work); ``stop_timeout``: how long a stop waits for the round under way;
    ``stale_after``: `health` fails when no round has finished for this long.
    """

    def __init__(self, log: MinLog, *, poll: float = 1.0, stop_timeout: float = 8.0,
                 stale_after: float = 180.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if poll <= 0 or stop_timeout < 0 or stale_after <= 0:
            raise ValueError("poll and stale_after must be positive, stop_timeout >= 0")
        self.log = log
        self.poll = poll
        self.stop_timeout = stop_timeout
        self.stale_after = stale_after
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._hurry = threading.Event()
        self._thread: threading.Thread | None = None
        self._shut_down = False
        #: Rounds finished, and when the last one finished (``monotonic``; None: none yet).
        self.rounds = 0
        self.last_round: float | None = None
        #: The last round's failure (redacted), None after a round that succeeded.
        self.last_error: str | None = None
        #: What asked the service to stop (e.g. ``"SIGTERM"``), and the entries given
        #: back at the stop.
        self.stopped_by: str | None = None
        self.released = 0

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """Start the rounds' thread."""
        if self._thread is not None:
            raise RuntimeError("the service was started already")
        self._thread = threading.Thread(target=self._run, name="minlog-service",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.log.step()
            except ClosedError:
                return
            except Exception as exc:
                self.last_error = redact(f"{type(exc).__name__}: {exc}")
                emit("step_failed", "delivery step failed; retrying: %s", self.last_error,
                     error=type(exc).__name__)
                result = StepResult(wait=self.poll)
            else:
                self.rounds += 1
                self.last_round = self._monotonic()
                self.last_error = None
            if result.claimed:
                continue
            wait = self.poll if result.wait is None else min(result.wait, self.poll)
            if wait > 0:
                self._stop.wait(wait)

    def stop(self, reason: str = "stop") -> None:
        """Ask the service to stop after the round under way (a second call: without
        waiting for it). Safe from a signal handler: it only sets flags."""
        if self._stop.is_set():
            self._hurry.set()
            return
        self.stopped_by = reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until `stop` is called (in slices, so that signals are handled); True
        when it was."""
        deadline = None if timeout is None else self._monotonic() + timeout
        while not self._stop.is_set():
            left = 1.0 if deadline is None else min(1.0, deadline - self._monotonic())
            if left <= 0:
                return False
            self._stop.wait(left)
        return True

    def shutdown(self) -> int:
        """Stop: wait up to ``stop_timeout`` for the round under way; if it is still
        running, give this instance's leases back at once. Returns the entries given
        back. Does not close the `MinLog`. Idempotent; nothing before `start`."""
        thread = self._thread
        if thread is None or self._shut_down:
            return self.released
        self._shut_down = True
        if not self._stop.is_set():
            self.stop()
        emit("worker_stopping", "stopping (%s): the round under way is finished, nothing "
             "new is claimed", self.stopped_by, signal=self.stopped_by)
        deadline = self._monotonic() + self.stop_timeout
        while thread.is_alive() and not self._hurry.is_set():
            left = deadline - self._monotonic()
            if left <= 0:
                break
            thread.join(min(left, 0.1))
        if thread.is_alive():
            # Twice: a claim committed just after the first release is given back too.
            for _ in range(2):
                try:
                    self.released += self.log.store.release_leases()
                except Exception as exc:
                    self.last_error = redact(f"{type(exc).__name__}: {exc}")
                    break
                thread.join(0.1)
            emit("leases_released", "the round under way did not finish within %.1f s: %d "
                 "entries given back to pending", self.stop_timeout, self.released,
                 count=self.released)
        return self.released

    # ------------------------------------------------------------------ health

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the service is healthy, and a report of counts (never a CPR number):
        healthy when it is not stopping, a round finished within ``stale_after`` seconds
        and the store answers now."""
        problems = []
        report: dict[str, Any] = {}
        try:
            s = self.log.stats()
        except Exception as exc:
            problems.append("store")
            report.update(pending=None, in_flight=None, dead=None, oldest_pending_age=None,
                          delivered=None,
                          last_error=redact(f"{type(exc).__name__}: {exc}"))
        else:
            report.update(pending=s.pending, in_flight=s.in_flight, dead=s.dead,
                          oldest_pending_age=s.oldest_pending_age, delivered=s.delivered,
                          last_error=self.last_error or s.last_error)
        last = self.last_round
        age = None if last is None else max(0.0, self._monotonic() - last)
        if age is None or age > self.stale_after:
            problems.append("no_recent_round")
        if self._stop.is_set():
            problems.append("stopping")
        if report["last_error"] is not None:
            report["last_error"] = redact(report["last_error"])
        report.update(status="ok" if not problems else "unavailable", problems=problems,
                      rounds=self.rounds,
                      last_round_age=None if age is None else round(age, 3))
        return not problems, report
