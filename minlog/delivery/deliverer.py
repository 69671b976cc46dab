"""Delivery: drain the outbox to the transport in batches, classify what fails.

`Deliverer.step` does one round synchronously (claim, unseal, send, settle) and is what
tests and ``minlog drain`` call; `Worker` runs steps on a background thread. `RetryPolicy`
and `RateLimit` are frozen values that compute delays without sleeping.

Outcomes per entry: acked (delivered), retried later (transient fault: outage, timeout,
5xx, 429, or any unexpected exception), or dead-lettered with the receiver's fault code
and text (a per-entry fault, or a permanent request fault isolated to that one entry by
splitting the batch). Nothing is ever dropped: an outbox reports and keeps.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

import attrs

from minlog.errors import PermanentDeliveryError, StoreError, TransientDeliveryError
from minlog.minlog2 import BatchResult, Transport
from minlog.minlog2.registration import Registration
from minlog.store import OutboxEntry, Store

__all__ = ["Deliverer", "RateLimit", "RetryPolicy", "StepResult", "Worker"]

log = logging.getLogger("minlog.delivery")

UNREADABLE: Final = "minlog:unreadable"
#: The dead-letter code of an entry the receiver counted as failed without naming it.
UNATTRIBUTED: Final = "minlog:unattributed"


@attrs.frozen(slots=True)
class RetryPolicy:
    """Exponential backoff with jitter; never gives up in time.

    The n-th consecutive failure of an entry waits ``initial * multiplier**(n-1)`` seconds,
    capped at ``maximum``, spread by ±``jitter`` (a fraction). A receiver's ``Retry-After``
    is honoured as a floor.
    """

    initial: float = 1.0
    multiplier: float = 2.0
    maximum: float = 300.0
    jitter: float = 0.2

    def __attrs_post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1:
            raise ValueError("RetryPolicy: need 0 < initial <= maximum and multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("RetryPolicy: jitter must be in [0, 1)")

    def delay(
        self,
        attempt: int,
        *,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt, 1) - 1, 64)
        base = min(self.maximum, self.initial * self.multiplier**exponent)
        spread = base * self.jitter * (2 * rand() - 1)
        wait = base + spread
        if retry_after is not None:
            wait = max(wait, retry_after)
        return max(wait, 0.0)


@attrs.frozen(slots=True)
class RateLimit:
    """At most ``requests`` sends in any window of ``per`` seconds.

    MinLog2's public operating guidance is about 20 requests an hour of about 500 entries
    each (`RateLimit.guidance()`): 10,000 entries an hour. A stricter limit protects the
    shared service; a backlog larger than the limit can drain shows in ``stats()``.
    """

    requests: int
    per: float

    def __attrs_post_init__(self) -> None:
        if self.requests < 1 or self.per <= 0:
            raise ValueError("RateLimit: requests >= 1 and per > 0")

    @classmethod
    def guidance(cls) -> RateLimit:
        """The public guidance: 20 requests per hour."""
        return cls(20, 3600.0)

    def wait(self, sent_at: Sequence[float], now: float) -> float:
        """Seconds until one more request is allowed, given the send times so far."""
        recent = [t for t in sent_at if t > now - self.per]
        if len(recent) < self.requests:
            return 0.0
        return recent[-self.requests] + self.per - now

    def drain_seconds(self, entries: int, batch_size: int) -> float:
        """Seconds needed to send ``entries`` at this limit."""
        requests = -(-entries // batch_size)
        return max(0.0, (requests - self.requests) * self.per / self.requests)


@attrs.frozen(slots=True)
class StepResult:
    """What one `Deliverer.step` did."""

    claimed: int = 0
    acked: int = 0
    retried: int = 0
    dead: int = 0
    requests: int = 0
    wait: float | None = None  # seconds until there may be work again (None: unknown)


@attrs.define
class _Tally:
    acked: int = 0
    retried: int = 0
    dead: int = 0
    requests: int = 0


class Deliverer:
    """Delivery rounds; several threads may call `step` at once (the store's claims are
    exclusive; the rate limit and the counters are shared under a lock)."""

    def __init__(
        self,
        store: Store,
        transport: Transport,
        unseal: Callable[[OutboxEntry], Registration],
        *,
        batch_size: int = 500,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | None = None,
        lease_seconds: float = 120.0,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not 1 <= batch_size <= 10_000:
            raise ValueError("batch_size must be between 1 and 10000")
        self.store = store
        self.transport = transport
        self.unseal = unseal
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()
        self.rate_limit = rate_limit
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.rand = rand
        self.sent_at: deque[float] = deque(maxlen=rate_limit.requests if rate_limit else 1)
        self.last_error: str | None = None
        self.delivered = 0
        #: Failures the receiver reported without naming the entry (see `_find_unattributed`).
        self.unattributed = 0
        self._lock = threading.Lock()

    def rate_wait(self, now: float) -> float:
        if self.rate_limit is None:
            return 0.0
        with self._lock:
            return self.rate_limit.wait(list(self.sent_at), now)

    def _reserve(self) -> float:
        """Take a send slot under the rate limit: 0 when taken, else seconds to wait."""
        with self._lock:
            now = self.clock()
            if self.rate_limit is not None:
                wait = self.rate_limit.wait(list(self.sent_at), now)
                if wait > 0:
                    return wait
            self.sent_at.append(now)
            return 0.0

    def step(self) -> StepResult:
        """Claim one batch of due entries and settle every one of them."""
        now = self.clock()
        wait = self.rate_wait(now)
        if wait > 0:
            return StepResult(wait=wait)
        entries = self.store.claim(self.batch_size, self.lease_seconds, now)
        if not entries:
            due = self.store.next_due()
            return StepResult(wait=None if due is None else max(0.0, due - now))
        tally = _Tally()
        readable: list[tuple[OutboxEntry, Registration]] = []
        unreadable: list[tuple[int, str, str]] = []
        for e in entries:
            try:
                readable.append((e, self.unseal(e)))
            except (StoreError, ValueError, json.JSONDecodeError) as exc:
                unreadable.append((e.id, UNREADABLE, str(exc)))
        if unreadable:
            self.store.bury(unreadable, self.clock())
            tally.dead += len(unreadable)
        if readable:
            self._deliver(readable, tally)
        with self._lock:
            self.delivered += tally.acked
        return StepResult(len(entries), tally.acked, tally.retried, tally.dead, tally.requests,
                          wait=0.0)

    def _deliver(self, batch: list[tuple[OutboxEntry, Registration]], tally: _Tally) -> None:
        ids = [e.id for e, _ in batch]
        wait = self._reserve()
        if wait > 0:  # a split must respect the limit too: try the rest later
            self.store.retry(ids, self.clock() + wait)
            tally.retried += len(ids)
            return
        tally.requests += 1
        try:
            result = self.transport.send([r for _, r in batch])
        except PermanentDeliveryError as exc:
            self.last_error = f"request rejected: {exc}"
            if len(batch) == 1:
                e = batch[0][0]
                self.store.bury([(e.id, exc.code or "request-rejected", str(exc))], self.clock())
                tally.dead += 1
                return
            half = len(batch) // 2  # isolate the bad entries instead of burying good ones
            self._deliver(batch[:half], tally)
            self._deliver(batch[half:], tally)
            return
        except Exception as exc:  # transient (or unknown): keep the batch, retry later
            retry_after = exc.retry_after if isinstance(exc, TransientDeliveryError) else None
            attempts = max(e.attempts for e, _ in batch)
            delay = self.retry.delay(attempts, retry_after=retry_after, rand=self.rand)
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("delivery failed (attempt %d), retrying in %.1f s: %s",
                        attempts, delay, self.last_error)
            self.store.retry(ids, self.clock() + delay)
            tally.retried += len(ids)
            return
        by_seq = {r.sequence_number: e for e, r in batch}
        failed = [(by_seq[f.sequence_number].id, f.code, f.text)
                  for f in result.failed if f.sequence_number in by_seq]
        strangers = [f for f in result.failed if f.sequence_number
                     and f.sequence_number not in by_seq]
        if failed:
            self.store.bury(failed, self.clock())
            tally.dead += len(failed)
            self.last_error = f"{len(failed)} entries rejected, e.g. {failed[0][1]}"
        dead_ids = {i for i, _, _ in failed}
        unattributed = result.unattributed + len(strangers)
        if unattributed:  # some entry failed unnamed: none of the rest may be acked
            rest = [(e, r) for e, r in batch if e.id not in dead_ids]
            self._find_unattributed(rest, unattributed, result, tally)
            return
        ok = [i for i in ids if i not in dead_ids]
        self.store.ack(ok)
        tally.acked += len(ok)

    def _find_unattributed(self, rest: list[tuple[OutboxEntry, Registration]], count: int,
                           result: BatchResult, tally: _Tally) -> None:
        """The receiver reported ``count`` failures without naming the entries (no
        ``SequenceNumber``, ``NumberFailed`` beyond those named, or names not in the
        batch). The fate of each entry in ``rest`` is unknown, so none is acked: one
        entry alone is the failed one (dead letter); more are split in halves and sent
        again, until the failures are found (entries accepted the first time may then
        reach the receiver twice, with the same ``SequenceNumber``)."""
        with self._lock:
            self.unattributed += count
        self.last_error = (f"receiver reported {count} failed entries without naming them; "
                           f"{len(rest)} entries of unknown fate are sent again to find them")
        log.warning("%s", self.last_error)
        if not rest:
            return
        if len(rest) == 1:
            sample = next((f for f in result.failed if not f.sequence_number), None)
            code = sample.code if sample is not None else UNATTRIBUTED
            text = (sample.text if sample is not None
                    else "counted as failed by the receiver, which named no entry")
            self.store.bury([(rest[0][0].id, code, text)], self.clock())
            tally.dead += 1
            return
        half = len(rest) // 2
        self._deliver(rest[:half], tally)
        self._deliver(rest[half:], tally)


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
        self._wake.set()

    def stop(self, timeout: float | None) -> bool:
        """Ask the thread to stop after its current step; True when it has stopped."""
        self._stop.set()
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
                self.deliverer.last_error = f"{type(exc).__name__}: {exc}"
                log.error("delivery step failed; retrying: %s", self.deliverer.last_error)
                result = StepResult(wait=self.poll)
            if result.claimed:
                continue
            wait = self.poll if result.wait is None else min(result.wait, self.poll)
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
