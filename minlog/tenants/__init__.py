"""Tenants: one installation serving several municipalities (care providers).

* `Tenant` (`minlog.tenants.tenant`): one municipality, named by its CVR: its name, its
  transport or credentials, its rate limit, its identity policy and its units;
* `TenantRouter` (`minlog.tenants.router`): which tenant an organisation belongs to;
* `Installation` (`minlog.tenants.installation`): the store and its tenants, from
  ``minlog.toml`` (`minlog.tenants.toml`) or code; ``Installation.open()`` is a `MinLog`
  that routes every access to its tenant and sends each tenant's entries with its own ID
  card.

See docs/tenants.md.
"""

from minlog.config import TransportSettings
from minlog.tenants.installation import Installation
from minlog.tenants.router import TenantRouter
from minlog.tenants.tenant import Tenant

__all__ = ["Installation", "Tenant", "TenantRouter", "TransportSettings"]
