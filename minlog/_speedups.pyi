"""Typing stub of the C accelerator ``minlog._speedups`` (source: ``_speedups.c``)."""

import datetime
from collections.abc import Sequence

def scan(
    batch: Sequence[object],
    access_type: type,
    prefix: bytes,
    hot: dict[int, set[bytes]],
    days: object,
    copenhagen: datetime.tzinfo,
    utc: datetime.tzinfo,
    horizon: float,
    /,
) -> list[tuple[int, int, bytes]] | int | None:
    """The candidates ``(index, day, key)`` of ``batch`` as ``Scanner._scan`` finds them;
    or the index of the first item to refuse; or None when the pure-Python scan must
    answer (an input it does not handle)."""

def blake2b16(data: bytes, /) -> bytes:
    """``hashlib.blake2b(data, digest_size=16).digest()``."""
