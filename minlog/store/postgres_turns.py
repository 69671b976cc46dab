"""The PostgreSQL store's scheduled claims: one tenant per lease, turns and rate limits
kept in the database (table ``tenants``, sequence ``tenant_turns``: migration 4 of
`minlog.store.postgres_schema`), decided by `minlog.delivery.schedule.DeliverySchedule`;
and each tenant's delivered count, kept there by `ack`.

Every function runs inside the caller's transaction. A claim looks at the tenants with
due work, then tries those ready least recently served first: it locks the tenant's
state row (``FOR UPDATE SKIP LOCKED``: a tenant another host is serving now is passed
over, and no claim ever waits for another), looks at it again (its turn, its send times,
its due entries), leases its entries and records the send before the lock is released at
commit. So a tenant's rate limit and turn hold for any number of hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from minlog.delivery.policy import RateLimit
from minlog.delivery.schedule import DeliverySchedule, TenantDue
from minlog.store.base import StoreCounts

if TYPE_CHECKING:  # psycopg is optional (the postgres extra); only its types are named
    import psycopg
    from psycopg import sql

    Conn = psycopg.Connection[Any]
    #: Formats a statement for the store's schema (``{s}``).
    Query = Callable[[str], sql.Composed]

__all__ = ["accepted_counts", "ack", "claim_rows", "delivered", "reserve_send",
           "tenant_counts"]


def claim_rows(conn: Conn, q: Query, plan: DeliverySchedule, *, limit: int, token: str,
               until: float, now: float, fill: bool, turns: str
               ) -> tuple[list[Any], float | None, bool, bool]:
    """Lease the due entries of the tenant whose turn it is and record its send (``turns``
    names the turn sequence); the leased rows ``(id, key, payload, attempts, tenant)``,
    when nothing was leased, when to look again (None: nothing waits), whether due
    entries were held back, and whether a tenant that may be served was passed over
    because another claim held it (then the caller asks again in a new transaction)."""
    state = {str(t): (int(turn), tuple(sent)) for t, turn, sent in conn.execute(
        q("SELECT tenant, turn, sent FROM {s}.tenants"))}
    due = [TenantDue(str(t), int(n), float(oldest), *state.get(str(t), (0, ())))
           for t, n, oldest in conn.execute(q(
               "SELECT tenant, count(*), min(accepted_at) FROM {s}.outbox "
               "WHERE due <= %s GROUP BY tenant"), [now])]
    new = sorted(r.tenant for r in due if r.tenant not in state)
    if new:  # in one order on every host: first inserts never wait in a cycle
        conn.execute(q("INSERT INTO {s}.tenants (tenant) SELECT unnest(%s::text[]) "
                       "ON CONFLICT DO NOTHING"), [new])
    contended = False
    for row in plan.order(due, now, fill=fill):
        locked = conn.execute(q(
            "SELECT turn, sent FROM {s}.tenants WHERE tenant = %s FOR UPDATE SKIP LOCKED"),
            [row.tenant]).fetchone()
        if locked is None or int(locked[0]) != row.turn:
            contended = True
            continue  # being served by another host now, or served since the first look
        count = conn.execute(q(
            "SELECT count(*), min(accepted_at) FROM (SELECT accepted_at FROM {s}.outbox "
            "WHERE tenant = %s AND due <= %s LIMIT %s) AS d"),
            [row.tenant, now, plan.batch_size]).fetchone()
        if count is None or not count[0]:
            continue
        fresh = TenantDue(row.tenant, int(count[0]), float(count[1]), row.turn,
                          tuple(locked[1]))
        if plan.ready_at(fresh, now, fill=fill) > now:
            continue
        rows = conn.execute(q(
            "UPDATE {s}.outbox SET state = 1, due = %(until)s, owner = %(token)s, "
            "attempts = attempts + 1 WHERE id IN (SELECT id FROM {s}.outbox "
            "WHERE due <= %(now)s AND tenant = %(tenant)s ORDER BY due, id "
            "LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
            "RETURNING id, key, payload, attempts, tenant"),
            {"until": until, "token": token, "now": now, "tenant": row.tenant,
             "limit": limit}).fetchall()
        if not rows:
            continue
        conn.execute(q("UPDATE {s}.tenants SET turn = nextval(%s), served = %s, sent = %s "
                       "WHERE tenant = %s"),
                     [turns, now, list(plan.sent_after(row.tenant, fresh.sent, now)),
                      row.tenant])
        return rows, None, False, False
    later = conn.execute(q("SELECT min(due) FROM {s}.outbox WHERE due > %s"),
                         [now]).fetchone()
    times = [t for t in (plan.pick(due, now, fill=fill).at,
                         None if later is None else later[0]) if t is not None]
    return [], float(min(times)) if times else None, bool(due), contended


def reserve_send(conn: Conn, q: Query, tenant: str, limit: RateLimit, now: float) -> float:
    """One more send of ``tenant`` under ``limit``: 0 when taken, else seconds to wait
    (its state row locked until the caller commits)."""
    conn.execute(q("INSERT INTO {s}.tenants (tenant) VALUES (%s) ON CONFLICT DO NOTHING"),
                 [tenant])
    row = conn.execute(q("SELECT sent FROM {s}.tenants WHERE tenant = %s FOR UPDATE"),
                       [tenant]).fetchone()
    sent = () if row is None else tuple(row[0])
    wait = limit.wait(sorted(sent), now)
    if wait <= 0:
        conn.execute(q("UPDATE {s}.tenants SET sent = %s WHERE tenant = %s"),
                     [list(limit.keep(sent, now)), tenant])
    return wait


def ack(conn: Conn, q: Query, lease: str, ids: Sequence[int]) -> None:
    """Remove the entries ``ids`` that ``lease`` holds from the outbox and add them to
    their tenants' delivered counts: one statement (tenants in one order on every host)."""
    conn.execute(q(
        "WITH gone AS (DELETE FROM {s}.outbox WHERE id = ANY(%s) AND owner = %s "
        "RETURNING tenant) INSERT INTO {s}.tenants AS t (tenant, delivered) "
        "SELECT tenant, count(*) FROM gone GROUP BY tenant ORDER BY tenant "
        "ON CONFLICT (tenant) DO UPDATE SET delivered = t.delivered + excluded.delivered"),
        [list(ids), lease])


def delivered(conn: Conn, q: Query) -> int:
    """The entries delivered, all tenants together."""
    row = conn.execute(q("SELECT COALESCE(sum(delivered), 0) FROM {s}.tenants")).fetchone()
    return 0 if row is None else int(row[0])


def tenant_counts(conn: Conn, q: Query) -> dict[str, StoreCounts]:
    """Pending, in flight, dead, the oldest accept time and delivered, per tenant."""
    out = {str(t): StoreCounts(int(p), int(f), 0, None if o is None else float(o))
           for t, p, f, o in conn.execute(q(
               "SELECT tenant, count(*) FILTER (WHERE state = 0), "
               "count(*) FILTER (WHERE state = 1), min(accepted_at) FROM {s}.outbox "
               "GROUP BY tenant"))}
    none = StoreCounts(0, 0, 0, None)
    for t, dead in conn.execute(q("SELECT tenant, count(*) FROM {s}.dead GROUP BY tenant")):
        out[str(t)] = attrs.evolve(out.get(str(t), none), dead=int(dead))
    for t, done in conn.execute(q(
            "SELECT tenant, delivered FROM {s}.tenants WHERE delivered > 0")):
        out[str(t)] = attrs.evolve(out.get(str(t), none), delivered=int(done))
    return out


def accepted_counts(conn: Conn, q: Query, bucket: int) -> dict[str, dict[int, int]]:
    """Entries held (outbox and dead letters) per tenant and accept-time bucket."""
    out: dict[str, dict[int, int]] = {}
    for table in ("outbox", "dead"):
        for tenant, n, count in conn.execute(q(
                "SELECT tenant, floor(accepted_at / %s)::bigint AS n, count(*) "
                f"FROM {{s}}.{table} WHERE accepted_at IS NOT NULL GROUP BY tenant, n"),
                [bucket]):
            counts = out.setdefault(str(tenant), {})
            counts[int(n)] = counts.get(int(n), 0) + int(count)
    return out
