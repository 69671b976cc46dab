"""The `Transport` protocol: hand a batch of registrations to MinLog2, learn what failed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from minlog.minlog2.registration import Registration

__all__ = ["BatchResult", "EntryFailure", "Transport"]


@attrs.frozen(slots=True)
class EntryFailure:
    """The receiver refused one entry, named by its ``SequenceNumber``."""

    sequence_number: str
    code: str
    text: str = ""


@attrs.frozen(slots=True)
class BatchResult:
    """The outcome of one accepted request: every entry not in ``failed`` was added."""

    failed: tuple[EntryFailure, ...] = ()
    number_added: int | None = None


class Transport(Protocol):
    """Delivers batches. ``send`` returns per-entry outcomes, or raises
    `TransientDeliveryError` (retry the whole batch later) or `PermanentDeliveryError`
    (the receiver refused the request itself; the worker splits the batch to find the bad
    entries). Any other exception is treated as transient."""

    def send(self, registrations: Sequence[Registration]) -> BatchResult: ...

    def close(self) -> None: ...
