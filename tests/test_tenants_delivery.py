"""Tenants end to end over real HTTP on loopback: an installation of three municipalities
-> a Minlog2Transport per tenant (its own certificate and ID card) -> FakeNSP serving the
three CVRs, which refuses any request whose entries name an organisation of another CVR
than its ID card's."""

from __future__ import annotations

import collections
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from minlog import Access, Employee, MinLog, Organisation, RetryPolicy, load_pkcs12
from minlog.metrics import collect
from minlog.tenants import Installation, Tenant, TransportSettings
from minlog.testing import FakeNSP, make_test_certificate

KEY = bytes(range(32))
TENANTS = {"55133018": "Aarhus Kommune", "35209115": "Odense Kommune",
           "29189846": "Vejle Kommune"}
UNITS = {cvr: [f"38000000000{i}{j:03d}" for j in range(3)]
         for i, cvr in enumerate(TENANTS, start=1)}
CERTS = {cvr: make_test_certificate(cvr, name) for cvr, name in TENANTS.items()}
ODENSE = "35209115"


def installation(tmp_path: Path, nsp: FakeNSP) -> Installation:
    tenants = [Tenant(cvr, name, credentials=load_pkcs12(*CERTS[cvr]), rate_limit=None,
                      units=UNITS[cvr]) for cvr, name in TENANTS.items()]
    return Installation(
        tmp_path / "m.sqlite", tenants, key=KEY,
        minlog2=TransportSettings(nsp.service_url, nsp.sts_url, "Cura",
                                  {"read_timeout": 2.0}),
        options={"batch_size": 20, "poll": 0.02,
                 "retry": RetryPolicy(initial=0.02, maximum=0.1, jitter=0.1)})


def fake() -> FakeNSP:
    return FakeNSP(cvrs=set(TENANTS), units=UNITS)


def accesses(n: int = 90) -> list[Access]:
    """Accesses of the three tenants' units, interleaved."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    units = [u for trio in zip(*UNITS.values(), strict=True) for u in trio]
    return [Access(f"{1 + i % 28:02d}0{1 + i % 9}{60 + i % 30:02d}4321",
                   Employee(f"0101{70 + i % 20:02d}{i:04d}", name=f"Medarbejder {i}"),
                   Organisation(units[i % len(units)]), "Opslag", now) for i in range(n)]


def by_tenant(batch: list[Access]) -> dict[str, set[str]]:
    """CVR -> the citizens of its accesses."""
    owner = {u: cvr for cvr, units in UNITS.items() for u in units}
    found: dict[str, set[str]] = collections.defaultdict(set)
    for a in batch:
        found[owner[a.organisation.id]].add(a.citizen)
    return found


def samples(log: MinLog, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    (family,) = [f for f in collect(log) if f.name == name]
    return {s.labels: s.value for s in family.samples}


class TestEachTenantsCard:
    def test_each_batch_carries_its_own_tenants_card(self, tmp_path: Path) -> None:
        """Interleaved accesses of three municipalities are all delivered, each request
        under the ID card of the tenant its entries belong to (the receiver refuses any
        other), one card fetched per tenant with its CVR and name."""
        with fake() as nsp:
            log = installation(tmp_path, nsp).open()
            batch = accesses()
            assert all(log.record_many(batch))
            assert log.flush(timeout=30)
            assert log.dead_letters() == []
            for received in nsp.batches:
                assert received.registrations
                assert {r.organisation_id for r in received.registrations} <= set(
                    UNITS[received.cvr])
            expected = by_tenant(batch)
            for cvr in TENANTS:
                assert {r.person_identifier for r in nsp.received_for(cvr)} == expected[cvr]
            assert nsp.cards_issued == 3
            assert len(nsp.received) == len(batch)
            names = sorted(t.care_provider_name for t in log.transports.values()
                           if hasattr(t, "care_provider_name"))
            assert names == sorted(TENANTS.values())
            fetched = samples(log, "minlog_card_fetches_total")
            for cvr in TENANTS:
                assert fetched[(("tenant", cvr), ("reason", "first"))] == 1
            expiries = samples(log, "minlog_certificate_expiry_timestamp_seconds")
            assert {labels[0][1] for labels in expiries} == set(TENANTS)
            delivered = samples(log, "minlog_delivered_total")
            for cvr in TENANTS:
                assert delivered[(("tenant", cvr),)] == len(expected[cvr])
            log.close(timeout=5)
            assert all(t._client.is_closed for t in log.transports.values()  # type: ignore[attr-defined]
                       )

    def test_a_refused_tenant_leaves_the_others_delivering(self, tmp_path: Path) -> None:
        """While the cards of one municipality are refused, the others' logs are all
        delivered and its own wait in the outbox (retried, never dead letters); once its
        cards are accepted again, they are delivered too."""
        with fake() as nsp:
            nsp.refuse_cards(ODENSE)
            log = installation(tmp_path, nsp).open()
            batch = accesses()
            assert all(log.record_many(batch))
            expected = by_tenant(batch)
            assert not log.flush(timeout=3)
            for cvr in TENANTS:
                got = {r.person_identifier for r in nsp.received_for(cvr)}
                assert got == (set() if cvr == ODENSE else expected[cvr])
            s = log.stats()
            assert (s.pending + s.in_flight, s.dead) == (len(expected[ODENSE]), 0)
            assert nsp.cards_refused >= 1
            nsp.refuse_cards(ODENSE, refuse=False)
            assert log.flush(timeout=30)
            assert {r.person_identifier for r in nsp.received_for(ODENSE)} == expected[ODENSE]
            counts = collections.Counter(r.sequence_number for r in nsp.received)
            assert len(counts) == len(batch)
            assert set(counts.values()) == {1}
            log.close(timeout=5)


def test_a_tenant_may_bring_its_own_transport(tmp_path: Path) -> None:
    """A tenant given a transport in code keeps it; one whose transport names another
    CVR is refused before the store is opened."""
    from minlog import ConfigurationError, Minlog2Transport

    with fake() as nsp:
        def transport(cvr: str) -> Minlog2Transport:
            return Minlog2Transport(service_url=nsp.service_url, sts_url=nsp.sts_url,
                                    credentials=CERTS[cvr], cvr=cvr, system_name="Cura",
                                    care_provider_name=TENANTS[cvr])

        base: dict[str, Any] = {"key": KEY, "system_name": "Cura"}
        good = Installation(tmp_path / "m.sqlite", [
            Tenant(cvr, name, transport=transport(cvr), units=UNITS[cvr], rate_limit=None)
            for cvr, name in TENANTS.items()], **base)
        with good.open() as log:
            assert log.record_many(accesses(6))
            assert log.flush(timeout=30)
        assert {b.cvr for b in nsp.batches} == set(TENANTS)
        other = transport("55133018")
        wrong = Installation(tmp_path / "n.sqlite", [
            Tenant(ODENSE, "Odense Kommune", transport=other)], **base)
        with pytest.raises(ConfigurationError) as e:
            wrong.open()
        other.close()
        assert "35209115 (Odense Kommune)" in str(e.value)
        assert "another CVR" in str(e.value)
        assert not (tmp_path / "n.sqlite").exists()
