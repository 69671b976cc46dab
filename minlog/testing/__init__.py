"""The public test kit: `FakeNSP` (a strict MinLog2 + STS receiver on loopback, with fault
injection), test certificates, and clocks that put the library at any date
(`FixedClock`, `ShiftedClock`, `SimulatedClock`). For tests, demos and vendors' own
integration tests; never for production."""

from minlog.core.clock import FixedClock, ShiftedClock, SimulatedClock
from minlog.testing.certs import (
    TestFederation,
    TestPki,
    issue_card,
    make_test_certificate,
    make_test_federation,
    make_test_pki,
)
from minlog.testing.fakensp import FakeNSP, Fault, ReceivedBatch

__all__ = [
    "FakeNSP",
    "Fault",
    "FixedClock",
    "ReceivedBatch",
    "ShiftedClock",
    "SimulatedClock",
    "TestFederation",
    "TestPki",
    "issue_card",
    "make_test_certificate",
    "make_test_federation",
    "make_test_pki",
]
