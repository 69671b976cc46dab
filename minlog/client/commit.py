"""Group commit: the first-of-day candidates of concurrent callers share one transaction.

An EOJ calls `MinLog.record` from many request threads at once. Each first-of-day log must
be durable before its call returns, so each needs a commit; one commit per call makes the
threads queue behind each other's commits. Here the callers that arrive while a commit
runs wait in a queue, and the next commit takes all of them (up to ``limit`` entries):
one transaction, one answer per entry, each caller woken with its own answers.

* One caller at a time is the *leader*: it runs the store's accept for a group and
  answers the group. When its own request is answered it hands the lead to the oldest
  waiting caller (or, with none waiting, steps down): no thread serves others for long.
* Entries of one group are accepted in queue order, so when two callers bring the same
  key the first one gets True, exactly as within one `record_many` call.
* A failed transaction fails every request of its group with that error (nothing of the
  group was committed; the callers may record again). A request larger than ``limit``
  is accepted alone, in transactions of ``limit`` entries, as before.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from minlog.errors import StoreError
from minlog.store.base import NewEntry

__all__ = ["GroupCommit"]

Entry = NewEntry
#: ``accept(entries, now) -> answers``: one store transaction (`Store.append`).
Accept = Callable[[Sequence[Entry], float], list[bool]]


class _Request:
    __slots__ = ("answers", "entries", "error", "event", "lead", "now")

    def __init__(self, entries: Sequence[Entry], now: float) -> None:
        self.entries = entries
        self.now = now
        self.answers: list[bool] | None = None
        self.error: BaseException | None = None
        self.event: threading.Event | None = None  # made only for a caller that waits
        self.lead = False

    def outcome(self) -> list[bool]:
        if self.error is not None:
            raise self.error
        assert self.answers is not None
        return self.answers


_INTERRUPTED: Final = "the transaction of this log was interrupted; record it again"


class GroupCommit:
    """Serialises calls to ``accept`` and merges the ones that queue up meanwhile."""

    def __init__(self, accept: Accept, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._accept = accept
        self.limit = limit
        self._lock = threading.Lock()
        self._queue: deque[_Request] = deque()
        self._busy = False
        #: Transactions run and requests served (for tests and stats).
        self.transactions = 0
        self.requests = 0

    def submit(self, entries: Sequence[Entry], now: float) -> list[bool]:
        """Accept ``entries`` (in one transaction with whatever else is waiting); their
        answers in order. Raises what the store raised for the transaction."""
        with self._lock:
            alone = not self._busy
            if alone:  # nobody leads: this caller does, with no queue to serve first
                self._busy = True
            else:
                req = _Request(entries, now)
                self._queue.append(req)
                event = req.event = threading.Event()
        if alone:
            try:
                answers = self._in_chunks(entries, now)
                self.requests += 1
            finally:
                self._hand_off()
            return answers
        if event is not None:
            event.wait()
            if not req.lead:
                return req.outcome()
        try:
            while req.answers is None and req.error is None:
                self._serve()
        finally:
            self._hand_off()
        return req.outcome()

    def _in_chunks(self, entries: Sequence[Entry], now: float) -> list[bool]:
        """One request alone: in transactions of at most ``limit`` entries."""
        answers: list[bool] = []
        for start in range(0, len(entries), self.limit):
            answers += self._accept(entries[start : start + self.limit], now)
            self.transactions += 1
        return answers

    def _serve(self) -> None:
        """Take the next group off the queue, accept it, answer its requests."""
        with self._lock:
            group = [self._queue.popleft()]
            size = len(group[0].entries)
            while self._queue and size + len(self._queue[0].entries) <= self.limit:
                nxt = self._queue.popleft()
                group.append(nxt)
                size += len(nxt.entries)
        try:
            if len(group) == 1:
                answers = self._in_chunks(group[0].entries, group[0].now)
            else:
                answers = self._accept([e for r in group for e in r.entries],
                                       max(r.now for r in group))
                self.transactions += 1
        except Exception as exc:
            for r in group:
                r.error = exc
            self._wake(group)
            return
        except BaseException:
            for r in group:
                r.error = StoreError(_INTERRUPTED)
            self._wake(group)
            raise
        at = 0
        for r in group:
            r.answers = answers[at : at + len(r.entries)]
            at += len(r.entries)
        self.requests += len(group)
        self._wake(group)

    @staticmethod
    def _wake(group: list[_Request]) -> None:
        for r in group:
            if r.event is not None:
                r.event.set()

    def _hand_off(self) -> None:
        """Give the lead to the oldest waiting caller, or step down."""
        with self._lock:
            if self._queue:
                nxt = self._queue[0]
                nxt.lead = True
                assert nxt.event is not None  # it queued while a leader was busy
                nxt.event.set()
            else:
                self._busy = False
