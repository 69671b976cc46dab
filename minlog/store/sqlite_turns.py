"""The SQLite store's scheduled claims: one tenant per lease, turns and rate limits kept in
the file (table ``tenants``, `minlog.store.sqlite_schema`), decided by
`minlog.delivery.schedule.DeliverySchedule`; and each tenant's delivered count, kept
there by `ack`.

Every function runs inside the caller's ``BEGIN IMMEDIATE`` transaction: SQLite's write
lock makes the read of the tenants' state, the choice, the lease and the record of the
send one step for every process on the file, so a rate limit holds however many
processes deliver.
"""

from __future__ import annotations

import json
import sqlite3
import struct
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

import attrs

from minlog.delivery.policy import RateLimit
from minlog.delivery.schedule import DeliverySchedule, Pick, TenantDue
from minlog.store.base import StoreCounts

__all__ = ["accepted_counts", "ack", "claim_rows", "delivered", "peek", "reserve_send",
           "tenant_counts"]

_RECORD: Final = (
    "INSERT INTO tenants (tenant, turn, served, sent) VALUES "
    "(?1, (SELECT COALESCE(MAX(turn), 0) + 1 FROM tenants), ?2, ?3) "
    "ON CONFLICT (tenant) DO UPDATE SET turn = excluded.turn, served = excluded.served, "
    "sent = excluded.sent")


def _pack(sent: tuple[float, ...]) -> bytes:
    return struct.pack(f"<{len(sent)}d", *sent)


def _unpack(blob: bytes | None) -> tuple[float, ...]:
    if not blob:
        return ()
    return struct.unpack(f"<{len(blob) // 8}d", blob)


def _state(conn: sqlite3.Connection, tenant: str | None = None
           ) -> dict[str, tuple[int, tuple[float, ...]]]:
    if tenant is None:
        rows = conn.execute("SELECT tenant, turn, sent FROM tenants")
    else:
        rows = conn.execute("SELECT tenant, turn, sent FROM tenants WHERE tenant = ?",
                            [tenant])
    return {str(t): (int(turn), _unpack(sent)) for t, turn, sent in rows}


def claim_rows(conn: sqlite3.Connection, schedule: DeliverySchedule, *, limit: int,
               token: str, until: float, now: float, fill: bool
               ) -> tuple[list[Any], float | None, bool]:
    """Lease the due entries of the tenant ``schedule`` picks and record its send; the
    leased rows ``(id, key, payload, attempts, tenant)``, and when nothing was leased,
    when to look again (None: nothing waits)."""
    state, due, pick = _look(conn, schedule, now, fill)
    if pick.tenant is not None:
        rows = conn.execute(
            "UPDATE outbox SET state = 1, owner = ?, due = ?, attempts = attempts + 1 "
            "WHERE id IN (SELECT id FROM outbox WHERE due <= ? AND tenant = ? "
            "ORDER BY id LIMIT ?) RETURNING id, key, payload, attempts, tenant",
            [token, until, now, pick.tenant, limit]).fetchall()
        if rows:
            sent = state.get(pick.tenant, (0, ()))[1]
            conn.execute(_RECORD, [pick.tenant, now,
                                   _pack(schedule.sent_after(pick.tenant, sent, now))])
            return rows, None, False
    return [], _next_at(conn, pick, now), bool(due)


def peek(conn: sqlite3.Connection, schedule: DeliverySchedule, *, now: float, fill: bool
         ) -> tuple[float | None, bool] | None:
    """What a claim at ``now`` would find, read without taking the write lock: None when
    a tenant may be served (the claim must then take it, in a write transaction);
    otherwise when to look again and whether due work is held back. A delivery process
    that finds nothing to send thus never holds up the processes recording meanwhile."""
    _, due, pick = _look(conn, schedule, now, fill)
    if pick.tenant is not None:
        return None
    return _next_at(conn, pick, now), bool(due)


def _look(conn: sqlite3.Connection, schedule: DeliverySchedule, now: float, fill: bool
          ) -> tuple[dict[str, tuple[int, tuple[float, ...]]], list[TenantDue], Pick]:
    """The tenants' state, those with due work, and the schedule's pick among them."""
    state = _state(conn)
    due = [TenantDue(str(t), int(n), float(oldest), *state.get(str(t), (0, ())))
           for t, n, oldest in conn.execute(
               "SELECT tenant, COUNT(*), MIN(accepted_at) FROM outbox WHERE due <= ? "
               "GROUP BY tenant", [now])]
    return state, due, schedule.pick(due, now, fill=fill)


def _next_at(conn: sqlite3.Connection, pick: Pick, now: float) -> float | None:
    """When a claim that found nothing to lease should look again: when the first
    tenant becomes eligible, or the next entry falls due (None: nothing waits)."""
    (later,) = conn.execute("SELECT MIN(due) FROM outbox WHERE due > ?", [now]).fetchone()
    times = [t for t in (pick.at, later) if t is not None]
    return min(times) if times else None


def reserve_send(conn: sqlite3.Connection, tenant: str, limit: RateLimit | None,
                 now: float) -> float:
    """One more send of ``tenant`` under ``limit``: 0 when taken, else seconds to wait."""
    if limit is None:
        return 0.0
    turn, sent = _state(conn, tenant).get(tenant, (0, ()))
    wait = limit.wait(sorted(sent), now)
    if wait > 0:
        return wait
    conn.execute("INSERT INTO tenants (tenant, turn, sent) VALUES (?, ?, ?) "
                 "ON CONFLICT (tenant) DO UPDATE SET sent = excluded.sent",
                 [tenant, turn, _pack(limit.keep(sent, now))])
    return 0.0


def ack(conn: sqlite3.Connection, lease: str, ids: Sequence[int]) -> None:
    """Remove the entries ``ids`` that ``lease`` holds from the outbox and add them to
    their tenants' delivered counts (in the caller's transaction)."""
    removed = Counter(str(t) for (t,) in conn.execute(
        "DELETE FROM outbox WHERE owner = ? AND id IN (SELECT value FROM json_each(?)) "
        "RETURNING tenant", [lease, json.dumps(list(ids))]))
    conn.executemany("INSERT INTO tenants (tenant, delivered) VALUES (?, ?) "
                     "ON CONFLICT (tenant) DO UPDATE SET "
                     "delivered = delivered + excluded.delivered", sorted(removed.items()))


def delivered(conn: sqlite3.Connection) -> int:
    """The entries delivered, all tenants together."""
    return int(conn.execute("SELECT COALESCE(SUM(delivered), 0) FROM tenants").fetchone()[0])


def tenant_counts(conn: sqlite3.Connection) -> dict[str, StoreCounts]:
    """Pending, in flight, dead, the oldest accept time and delivered, per tenant."""
    out: dict[str, StoreCounts] = {}
    for tenant, pending, in_flight, oldest in conn.execute(
            "SELECT tenant, SUM(state = 0), SUM(state = 1), MIN(accepted_at) FROM outbox "
            "GROUP BY tenant"):
        out[str(tenant)] = StoreCounts(int(pending), int(in_flight), 0, oldest)
    none = StoreCounts(0, 0, 0, None)
    for tenant, dead in conn.execute("SELECT tenant, COUNT(*) FROM dead GROUP BY tenant"):
        out[str(tenant)] = attrs.evolve(out.get(str(tenant), none), dead=int(dead))
    for tenant, done in conn.execute(
            "SELECT tenant, delivered FROM tenants WHERE delivered > 0"):
        out[str(tenant)] = attrs.evolve(out.get(str(tenant), none), delivered=int(done))
    return out


def accepted_counts(conn: sqlite3.Connection, bucket: int) -> dict[str, dict[int, int]]:
    """Entries held (outbox and dead letters) per tenant and accept-time bucket."""
    out: dict[str, dict[int, int]] = {}
    for table in ("outbox", "dead"):
        for tenant, n, count in conn.execute(
                f"SELECT tenant, CAST(accepted_at / ?1 AS INTEGER), "
                f"COUNT(*) FROM {table} WHERE accepted_at IS NOT NULL GROUP BY 1, 2",
                [bucket]):
            counts = out.setdefault(str(tenant), {})
            counts[int(n)] = counts.get(int(n), 0) + int(count)
    return out
