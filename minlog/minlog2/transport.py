"""The `Transport` protocol: hand a batch of registrations to MinLog2, learn what failed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from minlog.minlog2.registration import Registration

__all__ = ["BatchResult", "EntryFailure", "Transport"]


@attrs.frozen(slots=True)
class EntryFailure:
    """The receiver refused one entry, named by its ``SequenceNumber`` (``""`` when the
    receiver named none: the official schema makes ``SequenceNumber`` optional)."""

    sequence_number: str
    code: str
    text: str = ""


@attrs.frozen(slots=True)
class BatchResult:
    """The outcome of one accepted request: the entries named in ``failed`` were refused;
    ``number_failed`` is the receiver's ``NumberFailed`` (None: not given).

    When `unattributed` is not 0, some entries failed without the receiver saying which:
    the fate of every entry not named is then unknown, and none of them may be counted
    as delivered (the delivery loop splits the batch to find them)."""

    failed: tuple[EntryFailure, ...] = ()
    number_added: int | None = None
    number_failed: int | None = None

    @property
    def unattributed(self) -> int:
        """Failures naming no entry: those listed without ``SequenceNumber``, and
        ``NumberFailed`` beyond the failures listed."""
        unnamed = sum(1 for f in self.failed if not f.sequence_number)
        return unnamed + max(0, (self.number_failed or 0) - len(self.failed))


class Transport(Protocol):
    """Delivers batches. ``send`` returns per-entry outcomes, or raises
    `TransientDeliveryError` (retry the whole batch later) or `PermanentDeliveryError`
    (the receiver refused the request itself; the worker splits the batch to find the bad
    entries). Any other exception is treated as transient."""

    def send(self, registrations: Sequence[Registration]) -> BatchResult: ...

    def close(self) -> None: ...
