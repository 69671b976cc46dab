"""Transports: the protocol, the in-memory test double, and MinLog2 over HTTP."""

from ._base import BatchResult, EntryFailure, Transport
from .memory import MemoryTransport
from .minlog2 import Minlog2Transport

__all__ = ["BatchResult", "EntryFailure", "MemoryTransport", "Minlog2Transport", "Transport"]
