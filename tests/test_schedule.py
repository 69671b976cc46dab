"""`DeliverySchedule`: the pure decisions of delivery scheduling (no disk, no clock)."""

from __future__ import annotations

import math

import pytest

from minlog.delivery.policy import RateLimit
from minlog.delivery.schedule import DEFAULT_FILL_WAIT, DeliverySchedule, Pick, TenantDue

A, B, C = "11111111", "22222222", "33333333"


def due(tenant: str, n: int = 500, oldest: float = 0.0, turn: int = 0,
        sent: tuple[float, ...] = ()) -> TenantDue:
    return TenantDue(tenant, n, oldest, turn, sent)


class TestLimits:
    def test_overrides_the_default_and_none_is_unlimited(self) -> None:
        limit, strict = RateLimit.guidance(), RateLimit(1, 3600.0)
        plan = DeliverySchedule(rate_limit=limit, tenant_limits={A: strict, B: None})
        assert plan.limit_for(A) == strict
        assert plan.limit_for(B) is None
        assert plan.limit_for(C) == limit
        assert plan.limited
        assert not DeliverySchedule(tenant_limits={A: None}).limited
        assert DeliverySchedule(tenant_limits={A: strict}).limited

    def test_the_overrides_are_a_copy(self) -> None:
        """Changing the mapping given does not change the schedule (a frozen value)."""
        given: dict[str, RateLimit | None] = {A: None}
        plan = DeliverySchedule(rate_limit=RateLimit(1, 1.0), tenant_limits=given)
        given[A] = RateLimit(5, 1.0)
        assert plan.limit_for(A) is None

    @pytest.mark.parametrize(("kwargs", "message"), [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 10_001}, "batch_size"),
        ({"fill_wait": -1.0}, "fill_wait"),
        ({"fill_wait": math.inf}, "fill_wait"),
        ({"rate_limit": 20}, "rate_limit"),
        ({"tenant_limits": {A: 20}}, "tenant_limits"),
        ({"tenant_limits": {29189846: None}}, "tenant_limits"),
    ])
    def test_bad_settings_are_refused_naming_the_field(self, kwargs: dict[str, object],
                                                       message: str) -> None:
        with pytest.raises(ValueError, match=message):
            DeliverySchedule(**kwargs)  # type: ignore[arg-type]

    def test_default_fill_wait_leaves_room_under_the_guidance(self) -> None:
        """Partial batches every fill_wait use under a third of the guidance's requests."""
        g = RateLimit.guidance()
        assert g.per / DEFAULT_FILL_WAIT <= g.requests / 3


class TestReady:
    def test_a_full_batch_is_ready_at_once(self) -> None:
        plan = DeliverySchedule(batch_size=500, fill_wait=600.0)
        assert plan.ready_at(due(A, 500, oldest=99.0), 100.0) <= 100.0

    def test_a_partial_batch_waits_for_its_oldest_entry(self) -> None:
        plan = DeliverySchedule(batch_size=500, fill_wait=600.0)
        assert plan.ready_at(due(A, 499, oldest=50.0), 100.0) == 650.0
        assert plan.ready_at(due(A, 1, oldest=50.0), 100.0, fill=False) <= 100.0

    def test_the_rate_limit_defers(self) -> None:
        plan = DeliverySchedule(rate_limit=RateLimit(2, 60.0))
        assert plan.ready_at(due(A, sent=(10.0,)), 20.0) <= 20.0
        assert plan.ready_at(due(A, sent=(15.0, 10.0)), 20.0) == 70.0
        assert plan.ready_at(due(A, sent=(15.0, 10.0)), 20.0, fill=False) == 70.0

    def test_the_later_of_fill_and_limit(self) -> None:
        plan = DeliverySchedule(batch_size=10, fill_wait=100.0, rate_limit=RateLimit(1, 60.0))
        assert plan.ready_at(due(A, 3, oldest=0.0, sent=(50.0,)), 60.0) == 110.0
        assert plan.ready_at(due(A, 3, oldest=0.0, sent=(90.0,)), 60.0) == 150.0


class TestPick:
    def test_least_recently_served_first_then_tenant(self) -> None:
        plan = DeliverySchedule()
        rows = [due(C, turn=0), due(A, turn=7), due(B, turn=0)]
        assert plan.pick(rows, 10.0) == Pick(B)
        assert [r.tenant for r in plan.order(rows, 10.0)] == [B, C, A]

    def test_a_tenant_not_ready_is_passed_over(self) -> None:
        plan = DeliverySchedule(tenant_limits={A: RateLimit(1, 60.0)})
        rows = [due(A, turn=0, sent=(5.0,)), due(B, turn=9)]
        assert plan.pick(rows, 10.0) == Pick(B)

    def test_none_ready_says_when_the_first_is(self) -> None:
        plan = DeliverySchedule(batch_size=500, fill_wait=600.0, rate_limit=RateLimit(1, 60.0))
        rows = [due(A, 10, oldest=0.0), due(B, 500, sent=(30.0,))]
        assert plan.pick(rows, 40.0) == Pick(None, 90.0)
        assert plan.pick(rows, 40.0, fill=False) == Pick(A)

    def test_no_due_work(self) -> None:
        assert DeliverySchedule().pick([], 1.0) == Pick(None, None)


class TestSends:
    def test_keeps_the_latest_as_many_as_the_limit_counts(self) -> None:
        plan = DeliverySchedule(rate_limit=RateLimit(2, 60.0), tenant_limits={B: None})
        assert plan.sent_after(A, (30.0, 10.0, 20.0), 25.0) == (25.0, 30.0)
        assert plan.sent_after(B, (10.0,), 25.0) == ()

    def test_a_send_time_ahead_of_the_clock_counts(self) -> None:
        """Another host's clock a little ahead: its send still counts as recent."""
        assert RateLimit(1, 60.0).wait([70.0], 50.0) == 80.0

    def test_drain_under_each_tenants_limit(self) -> None:
        plan = DeliverySchedule(batch_size=500, rate_limit=RateLimit.guidance(),
                                tenant_limits={B: None, C: RateLimit(10, 3600.0)})
        assert plan.drain_seconds(A, 20_000) == 20 * 180.0
        assert plan.drain_seconds(B, 20_000) is None
        assert plan.drain_seconds(C, 20_000) == 30 * 360.0
