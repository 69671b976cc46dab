"""Transports: the protocol, the in-memory test double, and MinLog2 over HTTP."""

from minlog.minlog2.http import Minlog2Transport
from minlog.minlog2.memory import MemoryTransport
from minlog.minlog2.transport import BatchResult, EntryFailure, Transport

__all__ = ["BatchResult", "EntryFailure", "MemoryTransport", "Minlog2Transport", "Transport"]
