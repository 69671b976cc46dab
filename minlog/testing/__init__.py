"""The public test kit: `FakeNSP` (a strict MinLog2 + STS receiver on loopback, with fault
injection) and test certificates. For tests, demos and vendors' own integration tests;
never for production."""

from minlog.core.clock import FixedClock, SimulatedClock
from minlog.testing.certs import (
    TestFederation,
    TestPki,
    issue_card,
    make_test_certificate,
    make_test_federation,
    make_test_pki,
)
from minlog.testing.fakensp import FakeNSP, Fault

__all__ = [
    "FakeNSP",
    "Fault",
    "FixedClock",
    "SimulatedClock",
    "TestFederation",
    "TestPki",
    "issue_card",
    "make_test_certificate",
    "make_test_federation",
    "make_test_pki",
]
