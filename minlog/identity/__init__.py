"""How the employee is shown to the citizen, per municipality and unit.

* `minlog.identity.formatters` - `FullName`, `AlternativeId`, `Initials` (pure).
* `minlog.identity.policy` - `IdentityPolicy` (one municipality, or several, each a
  `MunicipalityPolicy`: a default plus per-unit overrides), in code or from TOML.
* `minlog.identity.binding` - `BoundIdentity`: a policy joined to the store's alias
  registry (`AliasRegistry`), for unique, resolvable codes.
* `minlog.identity.codes` - reading typed codes back (check symbol), `IssuedCode`.
* `minlog.identity.memory` - `MemoryAliasRegistry`, the registry in memory.

See ``docs/identity.md``.
"""

from minlog.identity.binding import AliasRegistry, BoundIdentity
from minlog.identity.codes import CodeLookup, IssuedCode
from minlog.identity.formatters import AlternativeId, FullName, IdentityFormatter, Initials
from minlog.identity.memory import MemoryAliasRegistry
from minlog.identity.policy import IdentityPolicy, MunicipalityPolicy

__all__ = [
    "AliasRegistry",
    "AlternativeId",
    "BoundIdentity",
    "CodeLookup",
    "FullName",
    "IdentityFormatter",
    "IdentityPolicy",
    "Initials",
    "IssuedCode",
    "MemoryAliasRegistry",
    "MunicipalityPolicy",
]
