"""The delivery loop on a real SQLite store: acks, retries, dead letters, splits, limits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest

from minlog import (
    Access,
    BatchResult,
    Employee,
    EntryFailure,
    MemoryTransport,
    Organisation,
    PermanentDeliveryError,
    RateLimit,
    Registration,
    RetryPolicy,
    TransientDeliveryError,
)
from minlog.core.clock import SimulatedClock
from minlog.delivery.deliverer import BEYOND_RETENTION, UNATTRIBUTED, UNREADABLE, Deliverer
from minlog.delivery.worker import Worker
from minlog.minlog2 import entry
from minlog.store import NewEntry, OutboxEntry
from minlog.store.sqlite import SQLiteStore

AT = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
ACCESS = Access("0202802345", Employee("0101701234", name="Anne Jensen"),
                Organisation("380000000000001"), "Opslag", AT)


def payload(n: int, at: dt.datetime = AT) -> bytes:
    return entry.encode_access(attrs.evolve(ACCESS, at=at), "Cura", f"{n:032x}",
                               "Anne Jensen", None)


def open_entry(e: OutboxEntry) -> entry.Fields:
    return entry.decode_fields(e.payload)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "m.sqlite")
    s.append([NewEntry(1, n.to_bytes(16, "big"), payload(n)) for n in range(10)], 1000.0)
    yield s
    s.close()


def deliverer(store: SQLiteStore, transport: object, clock: SimulatedClock,
              **kw: object) -> Deliverer:
    return Deliverer(store, transport, open_entry, clock=clock, rand=lambda: 0.5,  # type: ignore[arg-type]
                     retry=RetryPolicy(initial=10.0, jitter=0.0), **kw)  # type: ignore[arg-type]


def Clock() -> SimulatedClock:
    return SimulatedClock(AT + dt.timedelta(minutes=5))


class TestDeliverer:
    def test_acks_what_was_delivered(self, store: SQLiteStore) -> None:
        """A step sends one batch and removes it from the outbox."""
        t = MemoryTransport()
        d = deliverer(store, t, Clock(), batch_size=4)
        result = d.step()
        assert (result.claimed, result.acked, result.requests) == (4, 4, 1)
        assert store.counts().pending == 6
        assert d.delivered == 4

    @pytest.mark.parametrize("error", [TransientDeliveryError("down", retry_after=30.0),
                                       RuntimeError("unexpected")])
    def test_transient_failures_retry_later(self, store: SQLiteStore,
                                            error: Exception) -> None:
        """A failed send keeps the batch and retries it after the backoff (or Retry-After)."""
        clock = Clock()
        t = MemoryTransport()
        t.fail_next(error)  # type: ignore[arg-type]
        d = deliverer(store, t, clock, batch_size=10)
        assert d.step().retried == 10
        assert d.last_error is not None
        due = store.next_due()
        assert due == clock.time() + (30.0 if isinstance(error, TransientDeliveryError) else 10.0)
        assert d.step().claimed == 0
        clock.set(due)
        assert d.step().acked == 10
        assert len(t.delivered) == 10

    def test_entry_failures_become_dead_letters(self, store: SQLiteStore) -> None:
        """Entries refused by sequence number are dead-lettered; the rest are acked."""
        t = MemoryTransport(reject=lambda r: "E1" if r.sequence_number.endswith("3") else None)  # type: ignore[union-attr]
        d = deliverer(store, t, Clock(), batch_size=10)
        result = d.step()
        assert (result.acked, result.dead) == (9, 1)
        assert [x.code for x in store.dead_letters()] == ["E1"]

    def test_rejected_request_is_split_to_the_bad_entry(self, store: SQLiteStore) -> None:
        """A request refused as a whole is halved until the bad entry stands alone."""
        sent: list[int] = []

        class Picky:
            def send(self, rs: Sequence[Registration]) -> BatchResult:
                sent.append(len(rs))
                if any((r.sequence_number or "").endswith("7") for r in rs):
                    raise PermanentDeliveryError("malformed", code="soap:Client")
                return BatchResult()

            def close(self) -> None:
                pass

        d = deliverer(store, Picky(), Clock(), batch_size=10)
        result = d.step()
        assert (result.acked, result.dead) == (9, 1)
        assert sent[0] == 10
        assert len(sent) <= 2 * 4 + 1  # log2(10) levels of halving
        assert store.dead_letters()[0].code == "soap:Client"

    def test_rate_limit_defers_sends(self, store: SQLiteStore) -> None:
        """With one request a minute allowed, the second batch waits for the window."""
        clock = Clock()
        t = MemoryTransport()
        d = deliverer(store, t, clock, batch_size=5, rate_limit=RateLimit(1, 60.0))
        assert d.step().acked == 5
        waiting = d.step()
        assert (waiting.claimed, waiting.wait) == (0, 60.0)
        clock.advance(60)
        assert d.step().acked == 5
        assert t.batches == [5, 5]

    def test_unreadable_payload_is_a_dead_letter(self, tmp_path: Path) -> None:
        """A payload that cannot be opened is kept as a dead letter, never dropped."""
        s = SQLiteStore(tmp_path / "u.sqlite")
        s.append([NewEntry(1, b"k" * 16, b"not a payload"), NewEntry(1, b"j" * 16, payload(1))],
                 1.0)
        try:
            d = deliverer(s, MemoryTransport(), Clock())
            result = d.step()
            assert (result.acked, result.dead) == (1, 1)
            assert s.dead_letters()[0].code == UNREADABLE
        finally:
            s.close()


    def test_entries_beyond_minlog2s_retention_are_not_sent(self, tmp_path: Path) -> None:
        """An entry older than MinLog2 keeps logs becomes a dead letter with that reason."""
        s = SQLiteStore(tmp_path / "r.sqlite")
        old = AT - dt.timedelta(days=731)
        s.append([NewEntry(1, b"k" * 16, payload(1, old)), NewEntry(1, b"j" * 16, payload(2))],
                 1.0)
        try:
            t = MemoryTransport()
            result = deliverer(s, t, Clock(), retention_days=730).step()
            assert (result.acked, result.dead) == (1, 1)
            assert s.dead_letters()[0].code == BEYOND_RETENTION
            assert [r.sequence_number for r in t.delivered] == [f"{2:032x}"]
        finally:
            s.close()


class Unnamed:
    """A receiver that refuses entry 7 without naming it (no SequenceNumber), or that
    adds fewer entries than it was sent without saying which."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.sent: list[list[str]] = []

    def send(self, rs: Sequence[Registration]) -> BatchResult:
        seqs = [r.sequence_number or "" for r in rs]
        self.sent.append(seqs)
        bad = f"{7:032x}" in seqs
        if not bad:
            return BatchResult((), len(rs))
        if self.how == "no-sequence-number":
            return BatchResult((EntryFailure("", "E9", "refused"),), len(rs) - 1)
        return BatchResult((), len(rs) - 1)

    def close(self) -> None:
        pass


class TestUnknownFate:
    @pytest.mark.parametrize("how", ["no-sequence-number", "silently-not-added"])
    def test_an_entry_of_unknown_fate_is_found_never_acked(self, store: SQLiteStore,
                                                           how: str) -> None:
        """A failure that names no entry (or fewer added than sent) acks nothing it cannot
        vouch for: the batch is sent again in halves until the entry stands alone, then it
        is a dead letter; the others are delivered."""
        t = Unnamed(how)
        d = deliverer(store, t, Clock(), batch_size=10)
        result = d.step()
        assert (result.acked, result.dead) == (9, 1)
        [dead] = store.dead_letters()
        assert dead.key == (7).to_bytes(16, "big")
        assert dead.code == ("E9" if how == "no-sequence-number" else UNATTRIBUTED)
        assert store.counts().pending + store.counts().in_flight == 0
        assert d.unattributed > 0
        assert [f"{7:032x}"] in t.sent


class TestWorker:
    def test_start_wake_stop(self, store: SQLiteStore) -> None:
        """The worker thread delivers after a wake and stops when asked."""
        import time

        t = MemoryTransport()
        w = Worker(Deliverer(store, t, open_entry), poll=0.01)
        w.start()
        w.wake()
        deadline = time.monotonic() + 10
        while len(t.delivered) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(t.delivered) == 10
        assert w.stop(5)
        assert not w.running

    def test_a_failing_step_hook_does_not_kill_the_worker(self, store: SQLiteStore) -> None:
        """When the after-step hook fails (say, pruning hits a locked store), the worker
        keeps its thread, records the error and goes on delivering."""
        import time

        calls: list[int] = []

        def hook(result: object) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("prune failed")

        t = MemoryTransport()
        w = Worker(Deliverer(store, t, open_entry, batch_size=4), poll=0.01, on_step=hook)
        w.start()
        deadline = time.monotonic() + 10
        while len(t.delivered) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(t.delivered) == 10
        assert w.running
        assert w.deliverer.last_error == "RuntimeError: prune failed"
        assert w.stop(5)
