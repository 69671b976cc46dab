"""The exceptions of ``minlog``, all under one root.

::

    MinlogError
    ├── ValidationError (also ValueError)   bad input; nothing was stored
    ├── ConfigurationError                  bad settings, keys, certificates or policies
    ├── ClosedError (also RuntimeError)     the MinLog was closed: open a new one
    ├── StoreError                          the durable store failed (disk, lock, connection)
    └── DeliveryError                       a batch could not be delivered to MinLog2
        ├── TransientDeliveryError          worth retrying: outage, timeout, 5xx, 429
        └── PermanentDeliveryError          the receiver rejected the request for good

Foreign exceptions (``sqlite3``, ``psycopg``, ``httpx``, ``lxml``) are translated into
these where they enter the library; the original stays available as ``__cause__``.
No message ever contains a CPR number.
"""

from __future__ import annotations

__all__ = [
    "ClosedError",
    "ConfigurationError",
    "DeliveryError",
    "MinlogError",
    "PermanentDeliveryError",
    "StoreError",
    "TransientDeliveryError",
    "ValidationError",
]


class MinlogError(Exception):
    """The root of every error raised by ``minlog``."""


class ValidationError(MinlogError, ValueError):
    """An input broke a rule. ``field`` names the input, ``rule`` the rule it broke."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")

    def __reduce__(self) -> tuple[type[ValidationError], tuple[str, str]]:
        return type(self), (self.field, self.rule)


class ConfigurationError(MinlogError):
    """Settings, keys, certificates or policies are missing or inconsistent."""


class ClosedError(MinlogError, RuntimeError):
    """The `MinLog` (or the part of it that was used) has been closed; nothing was done.
    Open a new instance with `MinLog.open`: everything accepted before stays in the store."""


class StoreError(MinlogError):
    """The durable store failed; what was committed before stays committed."""


class DeliveryError(MinlogError):
    """A batch could not be delivered to MinLog2."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments travel in the state (pickle calls cls(*args) first).
        return type(self), self.args, dict(vars(self))


class TransientDeliveryError(DeliveryError):
    """A failure worth retrying later (outage, timeout, HTTP 5xx or 429).

    ``retry_after`` is the receiver's own hint in seconds, when it gave one.
    """

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, code=code)


class PermanentDeliveryError(DeliveryError):
    """The receiver rejected the whole request; sending it again unchanged will not help."""
