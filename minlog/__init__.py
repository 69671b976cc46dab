"""minlog: deliver first-of-day access logs from Danish care-record systems to MinLog2.

::

    import minlog

    with minlog.MinLog.open("minlog.sqlite", transport=transport, system_name="Cura") as log:
        log.record(minlog.Access(citizen, employee, organisation, "Opslag i stamkort", at))

See the README and ``docs/`` for the concepts, identity policies, operations and security.
"""

from minlog.client.facade import MinLog
from minlog.client.stats import DeadLetterInfo, Stats
from minlog.core.model import Access, Employee, OnBehalfOf, Organisation
from minlog.delivery.policy import RateLimit, RetryPolicy
from minlog.errors import (
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

__version__ = "0.1.0"

__all__ = [
    "Access",
    "AlternativeId",
    "BatchResult",
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
    "RateLimit",
    "Registration",
    "RetryPolicy",
    "SQLiteStore",
    "Stats",
    "Store",
    "StoreError",
    "SystemCredentials",
    "TransientDeliveryError",
    "Transport",
    "ValidationError",
    "__version__",
    "load_pkcs12",
]
