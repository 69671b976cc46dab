"""minlog: deliver first-of-day access logs from Danish care-record systems to MinLog2.

::

    import minlog

    with minlog.MinLog.open("minlog.sqlite", transport=transport, system_name="Cura") as log:
        log.record(minlog.Access(citizen, employee, organisation, "Opslag i stamkort", at))

See the README and ``docs/`` for the concepts, identity policies, operations and security.
"""

import inspect as _inspect
import sys as _sys
import typing as _typing
from typing import TYPE_CHECKING, Any

from minlog.client.facade import MinLog
from minlog.client.stats import DeadLetterInfo, Stats, TenantStats
from minlog.core.model import Access, Employee, OnBehalfOf, Organisation
from minlog.delivery.deliverer import StepResult
from minlog.delivery.policy import RateLimit, RetryPolicy
from minlog.errors import (
    ClosedError,
    ConfigurationError,
    DeliveryError,
    MinlogError,
    PermanentDeliveryError,
    StoreError,
    TransientDeliveryError,
    ValidationError,
)
from minlog.identity.policy import (
    AlternativeId,
    FullName,
    IdentityFormatter,
    IdentityPolicy,
    Initials,
)
from minlog.minlog2 import BatchResult, EntryFailure, MemoryTransport, Minlog2Transport, Transport
from minlog.minlog2.idcard import SystemCredentials, load_pkcs12
from minlog.minlog2.registration import Registration
from minlog.store import Store
from minlog.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from minlog.store.postgres import PostgresStore

__version__ = "0.1.0"

__all__ = [
    "Access",
    "AlternativeId",
    "BatchResult",
    "ClosedError",
    "ConfigurationError",
    "DeadLetterInfo",
    "DeliveryError",
    "Employee",
    "EntryFailure",
    "FullName",
    "IdentityFormatter",
    "IdentityPolicy",
    "Initials",
    "MemoryTransport",
    "MinLog",
    "Minlog2Transport",
    "MinlogError",
    "OnBehalfOf",
    "Organisation",
    "PermanentDeliveryError",
    "PostgresStore",
    "RateLimit",
    "Registration",
    "RetryPolicy",
    "SQLiteStore",
    "Stats",
    "StepResult",
    "Store",
    "StoreError",
    "SystemCredentials",
    "TenantStats",
    "TransientDeliveryError",
    "Transport",
    "ValidationError",
    "__version__",
    "load_pkcs12",
]


def _adopt(obj: Any) -> Any:
    """Make an exported class or function say it is ``minlog.<name>`` (in tracebacks,
    reprs and pickles), as its documented name. A class's own annotations are resolved
    first, in the module that wrote them, so that ``typing.get_type_hints`` still works."""
    if isinstance(obj, type):
        own = _inspect.get_annotations(obj)
        if own:
            hints = _typing.get_type_hints(obj, include_extras=True)
            obj.__annotations__ = {name: hints.get(name, hint) for name, hint in own.items()}
    obj.__module__ = __name__
    return obj


def __getattr__(name: str) -> Any:
    # PostgresStore is imported on first use, so that ``import minlog`` never imports
    # psycopg (an extra: pip install 'minlog[postgres]').
    if name == "PostgresStore":
        from minlog.store.postgres import PostgresStore

        globals()[name] = _adopt(PostgresStore)
        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


for _name in __all__:
    if _name not in ("__version__", "PostgresStore"):
        _adopt(getattr(_sys.modules[__name__], _name))
del _name
