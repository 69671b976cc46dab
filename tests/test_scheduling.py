"""Delivery scheduling through `MinLog`: batches that fill, per-tenant limits and figures,
flush that asks for everything now, per-tenant backlog warnings and metrics. Real SQLite
files, a simulated clock."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from minlog import Access, Employee, MemoryTransport, MinLog, Organisation, RateLimit
from minlog.core.clock import FixedClock, SimulatedClock
from minlog.delivery.schedule import DEFAULT_FILL_WAIT
from minlog.metrics import render_prometheus
from minlog.minlog2 import entry
from minlog.store import NewEntry
from minlog.tenants import Tenant

KEY = bytes(range(32))
START = dt.datetime(2026, 11, 24, 7, 0, tzinfo=dt.UTC)
A, B = "11111111", "22222222"
UNIT = Organisation("380000000000001")


def access(n: int, at: dt.datetime) -> Access:
    return Access("0202802345", Employee(f"010170{n:04d}", name=f"E {n}"), UNIT, "Opslag", at)


def open_log(path: Path, clock: FixedClock, **options: object) -> MinLog:
    return MinLog.open(path, transport=MemoryTransport(), system_name="Cura", key=KEY,
                       clock=clock, start_worker=False, exit_timeout=0.0,
                       durability="process", **options)  # type: ignore[arg-type]


def open_tenants(path: Path, clock: FixedClock, **options: object) -> MinLog:
    """A log serving tenants A and B, each with a transport of its own."""
    tenants = [Tenant(cvr, f"Kommune {cvr}", transport=MemoryTransport(),
                      units=[f"38000000000000{i}"]) for i, cvr in enumerate((A, B))]
    return MinLog.open(path, tenants=tenants, system_name="Cura", key=KEY, clock=clock,
                       start_worker=False, exit_timeout=0.0, durability="process",
                       **options)  # type: ignore[arg-type]


def tenant_entries(log: MinLog, tenant: str, count: int, first: int) -> list[NewEntry]:
    """Sealed entries of ``tenant``, as an installation of several municipalities makes
    them (the day and keys are arbitrary; the payloads open with the log's key)."""
    out = []
    at = dt.datetime.fromtimestamp(log._clock.time(), dt.UTC)
    for n in range(first, first + count):
        key = n.to_bytes(16, "big")
        plain = entry.encode_access(access(n, at), "Cura", key.hex(), f"E {n}", None)
        sealed = log._sealer.seal_many([(plain, key)])[0]
        out.append(NewEntry(log.today(), key, sealed, tenant))
    return out


def steady_state(path: Path, *, every: float, fill_wait: float, hours: float = 4.0,
                 batch_size: int = 50, **options: object) -> list[int]:
    """Record one first-of-day access every ``every`` seconds (simulated), running a
    delivery round after each (the most eager a worker can be); the entries per request
    before the final flush."""
    clock = SimulatedClock(START)
    with open_log(path, clock, batch_size=batch_size, fill_wait=fill_wait, **options) as log:
        transport = log.transport
        assert isinstance(transport, MemoryTransport)
        n = 0
        while n * every < hours * 3600:
            assert log.record(access(n, dt.datetime.fromtimestamp(clock.time(), dt.UTC)))
            log.step()
            clock.advance(every)
            n += 1
        sizes = list(transport.batches)
        assert log.flush(timeout=5)
        assert transport.count == n
    return sizes


class TestBatchesFill:
    def test_requests_carry_full_batches_in_steady_state(self, tmp_path: Path) -> None:
        """One log every 6 s, a round after each: with the fill wait, every request
        carries at least 90 % of batch_size (here all of it), under the guidance's
        limit; without it (and without a limit), each request carries one log."""
        sizes = steady_state(tmp_path / "fill.sqlite", every=6.0, fill_wait=DEFAULT_FILL_WAIT)
        assert len(sizes) >= 40
        assert min(sizes) >= 0.9 * 50
        assert sum(sizes) / len(sizes) >= 0.9 * 50
        eager = steady_state(tmp_path / "eager.sqlite", every=6.0, fill_wait=0.0, hours=0.5,
                             rate_limit=None)
        assert max(eager) == 1

    def test_a_slow_tenant_sends_what_waited_fill_wait(self, tmp_path: Path) -> None:
        """Fewer logs than a batch per fill_wait: a request every fill_wait seconds,
        with what came meanwhile (never more often)."""
        sizes = steady_state(tmp_path / "slow.sqlite", every=60.0, fill_wait=600.0, hours=3)
        assert sizes
        assert all(9 <= s <= 11 for s in sizes)

    def test_flush_does_not_wait_for_the_fill(self, tmp_path: Path) -> None:
        clock = SimulatedClock(START)
        with open_log(tmp_path / "m.sqlite", clock) as log:
            assert log.record(access(1, START))
            assert log.step().held
            assert log.flush(timeout=5)
            assert log.stats().delivered == 1


class TestLimits:
    def test_the_default_is_the_guidance(self, tmp_path: Path) -> None:
        clock = SimulatedClock(START)
        with open_log(tmp_path / "m.sqlite", clock) as log:
            assert log._deliverer.rate_limit == RateLimit.guidance()
            assert log._deliverer.schedule.fill_wait == DEFAULT_FILL_WAIT
        with open_log(tmp_path / "n.sqlite", clock, rate_limit=None) as log:
            assert log._deliverer.rate_limit is None

    def test_flush_honours_each_tenants_limit(self, tmp_path: Path) -> None:
        """flush sends everything of an unlimited tenant and only what its limit allows
        of a limited one; the rest stays pending for later."""
        clock = FixedClock(START)
        with open_tenants(tmp_path / "m.sqlite", clock, batch_size=10,
                          tenant_limits={A: RateLimit(2, 3600.0), B: None}) as log:
            log.store.append(tenant_entries(log, A, 50, 0) + tenant_entries(log, B, 50, 100),
                             clock.time())
            assert not log.flush(timeout=0.5)
            s = log.stats()
            assert (s.tenants[A].delivered, s.tenants[A].pending) == (20, 30)
            assert (s.tenants[B].delivered, s.tenants[B].pending) == (50, 0)
            assert s.tenants[A].drain_seconds == 1800.0  # 3 requests, 2 an hour
            assert s.tenants[B].drain_seconds is None
            assert s.drain_seconds == s.tenants[A].drain_seconds
            assert "" not in s.tenants
            clock.advance(3600)
            assert log.flush(timeout=0.5) is False  # two more batches of A only
            assert log.stats().tenants[A].pending == 10


class TestPerTenantFigures:
    def test_stats_per_tenant_and_totals(self, tmp_path: Path) -> None:
        clock = SimulatedClock(START)
        with open_log(tmp_path / "m.sqlite", clock, batch_size=10,
                      rate_limit=RateLimit(1, 3600.0)) as log:
            log.store.append(tenant_entries(log, A, 25, 0), clock.time())
            clock.advance(100)
            log.store.append(tenant_entries(log, B, 5, 100), clock.time())
            assert log.record(access(500, START))
            clock.advance(50)
            s = log.stats()
            assert set(s.tenants) == {"", A, B}
            assert (s.tenants[A].pending, s.tenants[A].oldest_pending_age) == (25, 150.0)
            assert (s.tenants[B].pending, s.tenants[B].oldest_pending_age) == (5, 50.0)
            assert s.tenants[""].pending == 1
            assert (s.pending, s.oldest_pending_age) == (31, 150.0)
            assert s.tenants[A].drain_seconds == 2 * 3600.0
            assert s.drain_seconds == 2 * 3600.0
            text = render_prometheus(log).decode()
            assert f'minlog_outbox_pending{{tenant="{A}"}} 25' in text.splitlines()
            assert f'minlog_outbox_pending{{tenant="{B}"}} 5' in text.splitlines()
            assert 'minlog_recorded_total{tenant=""} 1' in text.splitlines()

    def test_backlog_warnings_name_the_tenant(self, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
        clock = SimulatedClock(START)
        with open_tenants(tmp_path / "m.sqlite", clock, backlog_warning=600.0,
                          tenant_limits={A: RateLimit(1, 86400.0), B: None}) as log:
            log.store.append(tenant_entries(log, A, 600, 0), clock.time())
            log.store.append(tenant_entries(log, B, 1, 1000), clock.time())
            with caplog.at_level(logging.WARNING, logger="minlog"):
                log.step()
                clock.advance(700)
                log.step()
            warned = {getattr(r, "tenant", None) for r in caplog.records
                      if getattr(r, "event", None) == "backlog"}
            assert warned == {A}


class TestDeliveredInTheStore:
    def test_status_shows_what_each_tenant_had_delivered(self, tmp_path: Path) -> None:
        """Logs of two tenants delivered by one MinLog: ``minlog status --json`` (another,
        read-only instance, which delivered nothing) shows each tenant's delivered count,
        kept in the store; a second instance adds to it, while its own `Stats.delivered`
        counts what it delivered itself."""
        import io
        import json

        from minlog.cli.main import main

        clock = SimulatedClock(START)
        path = tmp_path / "m.sqlite"
        units = {A: Organisation("380000000000000"), B: Organisation("380000000000001")}

        def deliver(counts: dict[str, int], first: int) -> MinLog:
            tenants = [Tenant(cvr, f"Kommune {cvr}", transport=MemoryTransport(),
                              units=[unit.id]) for cvr, unit in units.items()]
            log = MinLog.open(path, tenants=tenants, system_name="Cura", clock=clock,
                              start_worker=False, exit_timeout=0.0, durability="process",
                              rate_limit=None, fill_wait=0)
            n = first
            for cvr, count in counts.items():
                for _ in range(count):
                    employee = Employee(f"010170{n:04d}", name=f"E {n}")
                    assert log.record(Access("0202802345", employee, units[cvr], "Opslag",
                                             START))
                    n += 1
            assert log.flush(timeout=5)
            return log

        with deliver({A: 3, B: 2}, 0) as log:
            assert {t: log.stats().tenants[t].delivered for t in (A, B)} == {A: 3, B: 2}

        def status() -> dict[str, int]:
            out = io.StringIO()
            assert main(["status", str(path), "--json"], out) == 0
            tenants = json.loads(out.getvalue())["tenants"]
            return {t: row["delivered"] for t, row in tenants.items() if t}

        assert status() == {A: 3, B: 2}
        with deliver({A: 1}, 100) as log:
            s = log.stats()
            assert (s.delivered, s.tenants[A].delivered, s.tenants[B].delivered) == (1, 4, 2)
        assert status() == {A: 4, B: 2}
        out = io.StringIO()
        assert main(["status", str(path)], out) == 0
        rows = {line.split()[0]: line.split() for line in out.getvalue().splitlines()[5:]}
        assert rows["tenant"][-1] == "delivered"
        assert (rows[A][-1], rows[B][-1]) == ("4", "2")
