"""Metric families: a `MinLog` turned into numbers an exporter can publish.

`collect` is the one place that reads an instance for metrics: the outbox totals of the
store (shared by every process on it), this process's counters (recording, delivery,
ID cards) and a few settings. Every exporter (`minlog.metrics.prometheus`,
`minlog.metrics.otel`) renders what it returns; `CATALOGUE` says up front which families
there are, so an exporter can register them before the first collection.

Every family that concerns a municipality carries a ``tenant`` label: its CVR, or ``""``
for a single municipality. The outbox families have one row per tenant of
`minlog.client.stats.Stats.tenants` (`_tenant_stats`), the delivery counters one per
tenant delivered for, the ID cards and the certificates one per tenant's own transport
(`_tenant_cards`, `_tenant_certificates`); this process's recording counters are
labelled ``""`` (they are not counted per tenant).

No family and no label ever holds a CPR number: the labels are tenants (CVR numbers),
fault kinds, card reasons and settings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Final, Literal

import attrs

from minlog import __version__
from minlog.delivery.counters import TenantCounts
from minlog.errors import MinlogError
from minlog.events import emit

if TYPE_CHECKING:
    from cryptography import x509

    from minlog.client.facade import MinLog
    from minlog.client.stats import Stats, TenantStats
    from minlog.minlog2.idcard import CardCache

__all__ = ["CATALOGUE", "FamilySpec", "MetricFamily", "Sample", "check_families", "collect"]

Kind = Literal["gauge", "counter"]
_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@attrs.frozen(slots=True)
class FamilySpec:
    """What a family is: its Prometheus ``name``, ``kind``, ``unit`` (UCUM, as
    OpenTelemetry writes it), ``labels``, its OpenTelemetry instrument name and ``help``."""

    name: str
    kind: Kind
    unit: str
    labels: tuple[str, ...]
    otel_name: str
    help: str

    def __attrs_post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"metric name {self.name!r}: not [a-zA-Z_:][a-zA-Z0-9_:]*")
        if self.kind == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r}: its name must end in _total")
        for label in self.labels:
            if not _LABEL.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"label name {label!r}: not [a-zA-Z_][a-zA-Z0-9_]*")


@attrs.frozen(slots=True)
class Sample:
    """One value of a family, with its label values (in the family's label order)."""

    labels: tuple[tuple[str, str], ...]
    value: float


@attrs.frozen(slots=True)
class MetricFamily:
    """A `FamilySpec` with the samples of one collection (possibly none)."""

    spec: FamilySpec
    samples: tuple[Sample, ...]

    @property
    def name(self) -> str:
        return self.spec.name


def _spec(name: str, kind: Kind, unit: str, labels: tuple[str, ...], otel: str,
          help: str) -> FamilySpec:
    return FamilySpec(name, kind, unit, labels, otel, help)


_T = ("tenant",)
#: Every family `collect` returns, in order.
CATALOGUE: Final[tuple[FamilySpec, ...]] = (
    _spec("minlog_info", "gauge", "1", ("version", "schema_version", "system_name", "store"),
          "minlog.info", "Always 1; the labels say which minlog, schema version, system "
          "name and store kind this process runs."),
    _spec("minlog_store_up", "gauge", "1", (), "minlog.store.up",
          "1 when the store answered this collection, 0 when it failed (the outbox "
          "families are then left out)."),
    _spec("minlog_outbox_pending", "gauge", "{entry}", _T, "minlog.outbox.pending",
          "Entries waiting to be sent (every process of the store)."),
    _spec("minlog_outbox_in_flight", "gauge", "{entry}", _T, "minlog.outbox.in_flight",
          "Entries leased to a delivery worker now."),
    _spec("minlog_outbox_dead", "gauge", "{entry}", _T, "minlog.outbox.dead",
          "Dead letters waiting for an operator (minlog dead-letters, minlog redrive)."),
    _spec("minlog_outbox_oldest_pending_age_seconds", "gauge", "s", _T,
          "minlog.outbox.oldest_pending_age",
          "Seconds since the oldest undelivered entry was accepted (0 when none waits)."),
    _spec("minlog_outbox_drain_seconds", "gauge", "s", _T, "minlog.outbox.drain_time",
          "Seconds the backlog needs under the rate limit (absent without a limit)."),
    _spec("minlog_recorded_total", "counter", "{access}", _T, "minlog.recorded",
          "Accesses recorded by this process."),
    _spec("minlog_first_of_day_total", "counter", "{log}", _T, "minlog.first_of_day",
          "First-of-day logs this process put in the outbox."),
    _spec("minlog_duplicates_total", "counter", "{access}", _T, "minlog.duplicates",
          "Accesses this process found to be repeats of the day."),
    _spec("minlog_late_total", "counter", "{log}", _T, "minlog.late",
          "First-of-day logs of days before the memory window (accepted, delivered)."),
    _spec("minlog_beyond_horizon_total", "counter", "{log}", _T, "minlog.beyond_horizon",
          "First-of-day logs older than the dedup horizon that were accepted."),
    _spec("minlog_delivered_total", "counter", "{entry}", _T, "minlog.delivered",
          "Entries this process delivered (the receiver took them)."),
    _spec("minlog_requests_total", "counter", "{request}", _T, "minlog.requests",
          "AddRegistrations requests this process sent, whatever their outcome."),
    _spec("minlog_failed_sends_total", "counter", "{request}", ("tenant", "kind"),
          "minlog.failed_sends",
          "Requests that failed: kind=transient (outage, timeout, 5xx, 429, STS; retried "
          "later) or kind=refused (the receiver refused the request; split to find the "
          "entries it refuses)."),
    _spec("minlog_dead_lettered_total", "counter", "{entry}", _T, "minlog.dead_lettered",
          "Entries this process made dead letters."),
    _spec("minlog_unattributed_failures_total", "counter", "{entry}", _T,
          "minlog.unattributed_failures",
          "Failures the receiver reported without naming the entry."),
    _spec("minlog_card_fetches_total", "counter", "{card}", ("tenant", "reason"),
          "minlog.card.fetches",
          "ID cards fetched from the STS: reason=first, expiring (renewed before it "
          "expired) or refused (renewed after the service refused it)."),
    _spec("minlog_card_expiry_timestamp_seconds", "gauge", "s", _T, "minlog.card.expiry",
          "When the current ID card expires (POSIX seconds; renewed before that)."),
    _spec("minlog_certificate_expiry_timestamp_seconds", "gauge", "s", _T,
          "minlog.certificate.expiry",
          "When the organisation's system certificate expires (POSIX seconds): renew it "
          "in time, a card cannot be had without it."),
    _spec("minlog_hot_keys", "gauge", "{key}", (), "minlog.hot_keys",
          "Dedup keys this process holds in memory."),
)
_BY_NAME: Final = {spec.name: spec for spec in CATALOGUE}


class _Builder:
    def __init__(self) -> None:
        self.samples: dict[str, list[Sample]] = {spec.name: [] for spec in CATALOGUE}

    def add(self, name: str, value: float | None, **labels: str) -> None:
        if value is None:
            return
        spec = _BY_NAME[name]
        self.samples[name].append(Sample(tuple((k, labels[k]) for k in spec.labels),
                                         float(value)))

    def families(self) -> list[MetricFamily]:
        return [MetricFamily(spec, tuple(self.samples[spec.name])) for spec in CATALOGUE]


def _tenant_stats(log: MinLog) -> tuple[Stats, Mapping[str, TenantStats]]:
    """This instance's statistics and the outbox figures per tenant (`Stats.tenants`)."""
    stats = log.stats()
    return stats, stats.tenants


def _tenant_cards(log: MinLog) -> Mapping[str, CardCache]:
    """The ID-card caches by tenant (its CVR; ``""`` for a single municipality): each
    transport's own, when it has one."""
    from minlog.minlog2.idcard import CardCache

    return {tenant: cards for tenant, t in log.transports.items()
            if isinstance(cards := getattr(t, "cards", None), CardCache)}


def _tenant_certificates(log: MinLog) -> Mapping[str, x509.Certificate]:
    """The system certificates by tenant: each transport's, when it has one."""
    from minlog.minlog2.idcard import SystemCredentials

    return {tenant: credentials.certificate for tenant, t in log.transports.items()
            if isinstance(credentials := getattr(t, "credentials", None), SystemCredentials)}


def _store_kind(log: MinLog) -> str:
    name = type(log.store).__name__.lower()
    return name.removesuffix("store") or name


def collect(log: MinLog) -> list[MetricFamily]:
    """Every family of `CATALOGUE` for ``log``, in that order. Never raises for a store
    that fails: ``minlog_store_up`` is then 0, the outbox families are empty and the
    failure is logged (event ``collect_failed``)."""
    b = _Builder()
    b.add("minlog_info", 1, version=__version__, schema_version=log.schema_version,
          system_name=log.system_name, store=_store_kind(log))
    stats: Stats | None
    try:
        stats, rows = _tenant_stats(log)
    except MinlogError as e:
        emit("collect_failed", "metrics: the store did not answer: %s", e,
             error=type(e).__name__)
        stats, rows = None, {}
    b.add("minlog_store_up", 0 if stats is None else 1)
    for tenant, t in rows.items():
        b.add("minlog_outbox_pending", t.pending, tenant=tenant)
        b.add("minlog_outbox_in_flight", t.in_flight, tenant=tenant)
        b.add("minlog_outbox_dead", t.dead, tenant=tenant)
        b.add("minlog_outbox_oldest_pending_age_seconds", t.oldest_pending_age or 0.0,
              tenant=tenant)
        b.add("minlog_outbox_drain_seconds", t.drain_seconds, tenant=tenant)
    if stats is not None:
        b.add("minlog_recorded_total", stats.recorded, tenant="")
        b.add("minlog_first_of_day_total", stats.first_of_day, tenant="")
        b.add("minlog_duplicates_total", stats.duplicates, tenant="")
        b.add("minlog_late_total", stats.late, tenant="")
        b.add("minlog_beyond_horizon_total", stats.beyond_horizon, tenant="")
    counted = log._deliverer.counters.snapshot()
    for tenant in sorted(set(counted) | set(rows)):
        c = counted.get(tenant) or TenantCounts()
        b.add("minlog_delivered_total", c.delivered, tenant=tenant)
        b.add("minlog_requests_total", c.requests, tenant=tenant)
        b.add("minlog_failed_sends_total", c.send_failures, tenant=tenant, kind="transient")
        b.add("minlog_failed_sends_total", c.refused_requests, tenant=tenant, kind="refused")
        b.add("minlog_dead_lettered_total", c.dead_lettered, tenant=tenant)
        b.add("minlog_unattributed_failures_total", c.unattributed, tenant=tenant)
    for tenant, cards in _tenant_cards(log).items():
        for reason, n in sorted(cards.fetched.items()):
            b.add("minlog_card_fetches_total", n, tenant=tenant, reason=reason)
        expires = cards.expires
        b.add("minlog_card_expiry_timestamp_seconds",
              None if expires is None else expires.timestamp(), tenant=tenant)
    for tenant, certificate in _tenant_certificates(log).items():
        b.add("minlog_certificate_expiry_timestamp_seconds",
              certificate.not_valid_after_utc.timestamp(), tenant=tenant)
    b.add("minlog_hot_keys", None if stats is None else stats.hot_keys)
    return b.families()


def check_families(families: Iterable[MetricFamily]) -> None:
    """Raise ValueError unless every family has unique names, each sample the family's
    labels, no two samples the same labels, and no NaN where a number is meant."""
    seen: set[str] = set()
    for f in families:
        if f.name in seen:
            raise ValueError(f"family {f.name} appears twice")
        seen.add(f.name)
        labelsets = set()
        for s in f.samples:
            if tuple(k for k, _ in s.labels) != f.spec.labels:
                raise ValueError(f"{f.name}: labels {s.labels} are not {f.spec.labels}")
            if s.labels in labelsets:
                raise ValueError(f"{f.name}: two samples with labels {s.labels}")
            labelsets.add(s.labels)
            if math.isnan(s.value):
                raise ValueError(f"{f.name}: NaN")
