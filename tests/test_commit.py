"""Group commit: concurrent callers' first-of-day candidates share transactions."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from minlog import StoreError
from minlog.client.commit import Entry, GroupCommit
from minlog.store.sqlite import SQLiteStore

DAY = 740_000


def entry(n: int, day: int = DAY) -> Entry:
    return Entry(day, n.to_bytes(16, "big"), b"p%d" % n)


class Gate:
    """An accept function whose first transaction waits until released, so that other
    callers queue up behind it. Records every transaction it ran."""

    def __init__(self, fail_when: int | None = None) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.transactions: list[list[Entry]] = []
        self.fail_when = fail_when
        self.seen: set[bytes] = set()

    def __call__(self, entries: Sequence[Entry], now: float) -> list[bool]:
        if not self.transactions:
            self.transactions.append(list(entries))
            self.entered.set()
            assert self.release.wait(10)
        else:
            self.transactions.append(list(entries))
        if self.fail_when is not None and len(self.transactions) == self.fail_when:
            raise StoreError("disk full")
        out = []
        for _, key, _, _ in entries:
            out.append(key not in self.seen)
            self.seen.add(key)
        return out


def queue_behind_first(commit: GroupCommit, gate: Gate, batches: list[list[Entry]]
                       ) -> list[list[bool] | BaseException]:
    """Submit ``batches[0]`` and, while its transaction is held, the others; release."""
    results: list[list[bool] | BaseException] = [[] for _ in batches]

    def run(i: int) -> None:
        try:
            results[i] = commit.submit(batches[i], float(i))
        except BaseException as e:
            results[i] = e

    first = threading.Thread(target=run, args=(0,))
    first.start()
    assert gate.entered.wait(10)
    others = [threading.Thread(target=run, args=(i,)) for i in range(1, len(batches))]
    for t in others:
        t.start()
    while len(commit._queue) < len(others):  # every other caller is waiting
        threading.Event().wait(0.001)
    gate.release.set()
    for t in [first, *others]:
        t.join(10)
        assert not t.is_alive()
    return results


class TestGroupCommit:
    def test_waiting_callers_share_one_transaction(self) -> None:
        """Callers that arrive during a transaction go together into the next one, each
        with its own answers in its own order."""
        gate = Gate()
        commit = GroupCommit(gate, limit=100)
        batches = [[entry(0)], [entry(1), entry(2)], [entry(3)], [entry(4), entry(1)]]
        results = queue_behind_first(commit, gate, batches)
        assert len(gate.transactions) == 2
        assert sorted(len(t) for t in gate.transactions) == [1, 5]
        r1, r2, r3 = results[1], results[2], results[3]
        assert isinstance(r1, list)
        assert isinstance(r3, list)
        assert results[0] == [True]
        assert r2 == [True]
        assert r1[1] is True
        assert r3[0] is True
        assert [r1[0], r3[1]].count(True) == 1  # key 1 twice: the first queued wins
        assert commit.transactions == 2

    def test_limit_caps_a_group(self) -> None:
        """A group holds at most ``limit`` entries; the rest go in the next."""
        gate = Gate()
        commit = GroupCommit(gate, limit=3)
        batches = [[entry(0)], [entry(1), entry(2)], [entry(3), entry(4)], [entry(5)]]
        results = queue_behind_first(commit, gate, batches)
        assert all(len(t) <= 3 for t in gate.transactions)
        assert all(r == [True] * len(b) for r, b in zip(results, batches, strict=True))

    def test_a_large_request_goes_alone_in_chunks(self) -> None:
        gate = Gate()
        gate.release.set()
        commit = GroupCommit(gate, limit=4)
        assert commit.submit([entry(n) for n in range(10)], 1.0) == [True] * 10
        assert [len(t) for t in gate.transactions] == [4, 4, 2]

    def test_a_failed_transaction_fails_its_whole_group_and_the_next_goes_on(self) -> None:
        """Every caller of a failed group gets the error; the lead passes on (no hang),
        and a later submit works."""
        gate = Gate(fail_when=2)
        commit = GroupCommit(gate, limit=100)
        batches = [[entry(0)], [entry(1)], [entry(2)]]
        results = queue_behind_first(commit, gate, batches)
        assert results[0] == [True]
        assert isinstance(results[1], StoreError)
        assert isinstance(results[2], StoreError)
        assert commit.submit([entry(1)], 5.0) == [True]  # nothing of the group was kept

    def test_limit_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="limit"):
            GroupCommit(Gate(), limit=0)


class TestOnARealStore:
    def test_many_threads_each_key_once(self, tmp_path: Path) -> None:
        """32 threads submit overlapping random batches to a real SQLite store through
        one GroupCommit: every key is True exactly once, every answer is consistent with
        the file, and transactions were shared."""
        store = SQLiteStore(tmp_path / "g.sqlite")
        commit = GroupCommit(store.append, limit=500)
        wins: list[int] = []
        lock = threading.Lock()

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(60):
                ns = [rng.randrange(800) for _ in range(rng.choice((1, 1, 3, 9)))]
                answers = commit.submit([entry(n) for n in ns], 1.0)
                with lock:
                    wins.extend(n for n, new in zip(ns, answers, strict=True) if new)

        threads = [threading.Thread(target=worker, args=(s,)) for s in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
            assert not t.is_alive()
        try:
            assert len(wins) == len(set(wins))
            assert store.counts().pending == len(wins)
            assert store.keys_of(DAY) == {n.to_bytes(16, "big") for n in wins}
            assert commit.transactions < commit.requests  # some were shared
        finally:
            store.close()
