"""Tenants: routing each access to its municipality by its organisation, the checks of an
installation's tenants against each other, and the facade with a transport per tenant
(in memory; over HTTP with ID cards in tests/test_tenants_delivery.py)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from minlog import (
    Access,
    AlternativeId,
    ConfigurationError,
    Employee,
    FullName,
    IdentityPolicy,
    Initials,
    MemoryTransport,
    MinLog,
    Organisation,
    RateLimit,
    TransientDeliveryError,
    ValidationError,
)
from minlog.core.days import COPENHAGEN
from minlog.identity import MunicipalityPolicy
from minlog.tenants import Installation, Tenant, TenantRouter
from minlog.testing import FixedClock

KEY = bytes(range(32))
SECRET = b"kommunens-hemmelighed-2026"
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=COPENHAGEN)
AARHUS, ODENSE = "55133018", "35209115"
NORD = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
MISBRUG = Organisation("380000000000002", "SOR", "Misbrugscenter Aarhus")
MISBRUG_TEAM = Organisation("380000000000021", "SOR", "Misbrugscenter, team Syd")
MISBRUG_HOLD = Organisation("380000000000022", "SOR", "Misbrugscenter, hold 2")
ODENSE_PLEJE = Organisation("380000000000030", "SOR", "Plejecenter Odense")
UNKNOWN = Organisation("380000000000099", "SOR", "En ny enhed")
ANNE = Employee("0101701234", name="Anne Jensen", role="SOSU-hjælper")
CITIZEN = "0303303456"


def aarhus(**kw: Any) -> Tenant:
    kw.setdefault("units", [NORD, MISBRUG.id])
    kw.setdefault("parents", {MISBRUG_TEAM.id: MISBRUG.id, MISBRUG_HOLD.id: MISBRUG_TEAM.id})
    return Tenant(AARHUS, "Aarhus Kommune", **kw)


def odense(**kw: Any) -> Tenant:
    kw.setdefault("units", [ODENSE_PLEJE.id, ("Kommunekode", "461")])
    return Tenant(ODENSE, "Odense Kommune", **kw)


def access(org: Organisation, at: dt.datetime = NOW, citizen: str = CITIZEN) -> Access:
    return Access(citizen, ANNE, org, "Opslag", at)


class TestTenant:
    def test_defaults(self) -> None:
        """A tenant's rate limit is the public guidance unless it says otherwise; None is
        explicitly unlimited; units given as SOR ids, pairs or Organisations are keyed
        alike."""
        t = aarhus()
        assert t.rate_limit == RateLimit.guidance()
        assert Tenant(AARHUS, "Aarhus Kommune", rate_limit=None).rate_limit is None
        assert t.units == {("SOR", NORD.id), ("SOR", MISBRUG.id)}
        assert odense().units == {("SOR", ODENSE_PLEJE.id), ("Kommunekode", "461")}
        assert t.parents[("SOR", MISBRUG_TEAM.id)] == ("SOR", MISBRUG.id)

    @pytest.mark.parametrize(("make", "says"), [
        (lambda: Tenant("5513301", "Aarhus Kommune"), "tenant 'Aarhus Kommune': cvr"),
        (lambda: Tenant("0101701234", "Aarhus Kommune"), "tenant 'Aarhus Kommune': cvr"),
        (lambda: Tenant(AARHUS, " "), "name is required"),
        (lambda: Tenant(AARHUS, "Aarhus Kommune", transport=MemoryTransport(),
                        credentials=object()), "55133018 (Aarhus Kommune): a transport or"),
        (lambda: Tenant(AARHUS, "Aarhus Kommune", rate_limit=20), "rate_limit"),
        (lambda: Tenant(AARHUS, "Aarhus Kommune", identity=FullName()), "MunicipalityPolicy"),
        (lambda: Tenant(AARHUS, "Aarhus Kommune", units=[3]), "units"),
    ], ids=["short cvr", "cpr as cvr", "name", "both", "rate limit", "identity", "unit"])
    def test_a_bad_tenant_names_the_key(self, make: Callable[[], Tenant], says: str) -> None:
        """Each mistake is a ConfigurationError naming the tenant and the key, never
        repeating a value that could be a CPR number."""
        with pytest.raises(ConfigurationError, match=re.escape(says)) as e:
            make()
        assert "0101701234" not in str(e.value)


class TestRouting:
    def test_listed_units_parents_and_the_cvr_itself(self) -> None:
        """A listed unit, a unit reached through the parent map (two levels up) and the
        municipality's own CVR as organisation route to their tenant."""
        router = TenantRouter([aarhus(), odense()])
        assert router.route(NORD).cvr == AARHUS
        assert router.route(MISBRUG_TEAM).cvr == AARHUS
        assert router.route(MISBRUG_HOLD).cvr == AARHUS
        assert router.route(ODENSE_PLEJE).cvr == ODENSE
        assert router.route(Organisation("461", "Kommunekode")).cvr == ODENSE
        assert router.route(Organisation(ODENSE, "CVR")).cvr == ODENSE
        assert router.route(Organisation(AARHUS, "CVR")).cvr == AARHUS

    def test_an_organisation_of_no_tenant_is_refused(self) -> None:
        """An organisation no tenant lists is a ValidationError on access.organisation
        saying the rule; its id (which may look like a CPR number) is not repeated."""
        router = TenantRouter([aarhus(), odense()])
        with pytest.raises(ValidationError) as e:
            router.route(Organisation("0101701234", "CVR-P"))
        assert e.value.field == "access.organisation"
        assert "no tenant" in e.value.rule
        assert "default_tenant" in e.value.rule
        assert "0101701234" not in str(e.value)
        with pytest.raises(ValidationError):
            router.route(Organisation(MISBRUG.id, "SKS"))  # the source is part of the unit

    def test_a_default_tenant_takes_the_rest(self) -> None:
        """With a default tenant (the catch-all), an organisation no tenant lists goes
        there; listed ones still go to their own tenant."""
        router = TenantRouter([aarhus(), odense()], default=ODENSE)
        assert router.route(UNKNOWN).cvr == ODENSE
        assert router.route(NORD).cvr == AARHUS

    @pytest.mark.parametrize(("tenants", "default", "says"), [
        (lambda: [aarhus(), Tenant(AARHUS, "Aarhus igen")], None,
         "tenant[1] 55133018 (Aarhus igen): cvr: 55133018 is also the CVR of tenant "
         "55133018 (Aarhus Kommune)"),
        (lambda: [aarhus(), odense(units=[NORD.id])], None,
         f"tenant[1] 35209115 (Odense Kommune): units: SOR {NORD.id} is also a unit of "
         "tenant 55133018 (Aarhus Kommune)"),
        (lambda: [aarhus(), odense(identity=MunicipalityPolicy(
            Initials(), units={("SOR", MISBRUG.id): FullName()}))], None,
         f"tenant[1] 35209115 (Odense Kommune): units: SOR {MISBRUG.id} is also a unit"),
        (lambda: [aarhus(parents={"1": "2", "2": "3", "3": "1"})], None,
         "tenant[0] 55133018 (Aarhus Kommune): parents: a cycle: SOR 1 -> SOR 2 -> SOR 3 "
         "-> SOR 1"),
        (lambda: [aarhus(parents={"1": ODENSE_PLEJE.id}), odense()], None,
         f"tenant[0] 55133018 (Aarhus Kommune): parents: SOR 1 leads up to SOR "
         f"{ODENSE_PLEJE.id}, a unit of tenant 35209115 (Odense Kommune)"),
        (lambda: [aarhus(parents={"1": "2"})], None,
         "tenant[0] 55133018 (Aarhus Kommune): parents: SOR 1 leads up to SOR 2, which is "
         "no unit of any tenant"),
        (lambda: [aarhus(parents={"1": NORD.id}), odense(parents={"1": ODENSE_PLEJE.id})],
         None, "tenant[1] 35209115 (Odense Kommune): parents: SOR 1 is also in the parents "
         "of tenant 55133018 (Aarhus Kommune)"),
        (lambda: [aarhus(), odense(parents={NORD.id: ODENSE_PLEJE.id})], None,
         f"tenant[1] 35209115 (Odense Kommune): parents: SOR {NORD.id} is a unit of tenant "
         "55133018"),
        (lambda: [aarhus()], "29189846", "default_tenant"),
        (lambda: [], None, "at least one tenant"),
    ], ids=["duplicate cvr", "unit twice", "identity unit twice", "cycle", "other tenant",
            "nowhere", "parents twice", "listed elsewhere", "default", "none"])
    def test_contradictions_name_the_tenant_and_the_key(
            self, tenants: Callable[[], list[Tenant]], default: str | None,
            says: str) -> None:
        """Every contradiction between tenants is a ConfigurationError naming the
        tenant (index, CVR and name) and the key, before anything is opened."""
        with pytest.raises(ConfigurationError, match=re.escape(says)):
            TenantRouter(tenants(), default=default)

    def test_rate_limits_by_cvr(self) -> None:
        """rate_limits(): each tenant's limit by CVR, None where it is unlimited."""
        installation = Installation("m.sqlite", [aarhus(), odense(rate_limit=None)])
        assert installation.rate_limits() == {AARHUS: RateLimit.guidance(), ODENSE: None}


class TestIdentity:
    def policy(self) -> IdentityPolicy:
        return TenantRouter([
            aarhus(identity=MunicipalityPolicy(
                FullName(), units={("SOR", MISBRUG.id): AlternativeId(SECRET)})),
            odense()]).identity_policy()

    def test_parents_take_the_override_of_the_unit_they_lead_to(self) -> None:
        """A team under the addiction centre shows codes as the centre does, never the
        full name of its municipality's default."""
        policy = self.policy()
        assert isinstance(policy.formatter_for(MISBRUG, AARHUS), AlternativeId)
        assert isinstance(policy.formatter_for(MISBRUG_TEAM, AARHUS), AlternativeId)
        assert isinstance(policy.formatter_for(MISBRUG_HOLD, AARHUS), AlternativeId)
        assert isinstance(policy.formatter_for(NORD, AARHUS), FullName)

    def test_a_tenant_without_identity_shows_full_names(self) -> None:
        """A tenant that chose nothing shows full names (the contract's default)."""
        assert isinstance(self.policy().formatter_for(ODENSE_PLEJE, ODENSE), FullName)


def open_log(tmp_path: Path, tenants: Any, **kw: Any) -> MinLog:
    kw.setdefault("clock", FixedClock(NOW))
    return MinLog.open(tmp_path / "m.sqlite", tenants=tenants, system_name="Cura", key=KEY,
                       start_worker=False, exit_timeout=0.0, **kw)


class TestFacade:
    def test_each_tenants_entries_go_through_its_own_transport(self, tmp_path: Path) -> None:
        """Accesses of two tenants, interleaved in one record_many, are stored with their
        tenant and sent each with its tenant's transport, in requests of their own."""
        a, o = MemoryTransport(), MemoryTransport()
        log = open_log(tmp_path, [aarhus(transport=a), odense(transport=o)])
        orgs = [NORD, ODENSE_PLEJE, MISBRUG_TEAM, ODENSE_PLEJE, Organisation(AARHUS, "CVR")]
        batch = [access(org, citizen=f"0{i + 1}03303456") for i, org in enumerate(orgs)]
        assert all(log.record_many(batch))
        counts = log.store.tenant_counts()
        assert {t: c.pending for t, c in counts.items()} == {AARHUS: 3, ODENSE: 2}
        assert log.flush(timeout=5)
        assert {r.organisation_id for r in a.delivered} == {NORD.id, MISBRUG_TEAM.id, AARHUS}
        assert {r.organisation_id for r in o.delivered} == {ODENSE_PLEJE.id}
        assert (a.batches, o.batches) == ([3], [2])
        log.close(timeout=1)
        assert a.closed
        assert o.closed

    def test_a_failing_tenant_does_not_hold_up_the_others(self, tmp_path: Path) -> None:
        """When one tenant's transport fails, its entries are retried and the others'
        are delivered meanwhile (each claim serves one tenant, in turns)."""
        a, o = MemoryTransport(), MemoryTransport()
        a.fail_next(TransientDeliveryError("STS down", code="sts"), times=10)
        log = open_log(tmp_path, [aarhus(transport=a), odense(transport=o)], fill_wait=0)
        log.record_many([access(NORD), access(ODENSE_PLEJE, citizen="0403303456")])
        results = [log.step(), log.step()]
        assert sorted((r.acked, r.retried, r.requests) for r in results) == [
            (0, 1, 1), (1, 0, 1)]
        assert len(o.delivered) == 1
        assert a.delivered == []
        assert log.stats().pending == 1
        log.close(timeout=1)

    def test_an_organisation_of_no_tenant_stores_nothing(self, tmp_path: Path) -> None:
        """record of an organisation no tenant lists is a ValidationError on
        access.organisation; nothing of the batch is stored."""
        log = open_log(tmp_path, [aarhus(transport=MemoryTransport())])
        with pytest.raises(ValidationError) as e:
            log.record_many([access(NORD), access(UNKNOWN, citizen="0403303456")])
        assert e.value.field == "access.organisation"
        assert log.stats().pending == 0
        assert log.record(access(NORD))  # nothing of the refused batch was kept
        log.close(timeout=1)

    def test_identity_follows_the_tenant(self, tmp_path: Path) -> None:
        """Each tenant's identity policy applies to its units, also through
        registration_for; resolve routes too."""
        a = MemoryTransport()
        log = open_log(tmp_path, [
            aarhus(transport=a, identity=MunicipalityPolicy(
                FullName(), units={("SOR", MISBRUG.id): AlternativeId(SECRET)})),
            odense(transport=MemoryTransport(), identity=MunicipalityPolicy(Initials()))])
        team = log.registration_for(access(MISBRUG_TEAM))
        assert team.user_person_name is not None
        assert team.user_person_name.startswith("Medarbejder ")
        assert log.registration_for(access(NORD)).user_person_name == "Anne Jensen"
        shown = log.registration_for(access(ODENSE_PLEJE)).user_person_name
        assert shown == "AJ, Plejecenter Odense"
        assert log.resolve(MISBRUG_TEAM, team.user_person_name) == ANNE.id
        with pytest.raises(ValidationError, match="no tenant"):
            log.resolve(UNKNOWN, team.user_person_name)
        with pytest.raises(ValidationError, match="no tenant"):
            log.registration_for(access(UNKNOWN))
        log.close(timeout=1)

    def test_the_first_access_of_the_day_wins_across_tenants(self, tmp_path: Path) -> None:
        """One employee working for two municipalities, one citizen, one day: one log,
        sent by the tenant of the first access, with its form."""
        a, o = MemoryTransport(), MemoryTransport()
        clock = FixedClock(NOW)
        log = open_log(tmp_path, [
            aarhus(transport=a), odense(transport=o, identity=MunicipalityPolicy(Initials()))],
            clock=clock)
        assert log.record(access(ODENSE_PLEJE))
        later = NOW + dt.timedelta(hours=3)
        clock.set(later)
        assert not log.record(access(NORD, later))
        assert log.flush(timeout=5)
        assert a.delivered == []
        assert [(r.organisation_id, r.user_person_name) for r in o.delivered] == [
            (ODENSE_PLEJE.id, "AJ, Plejecenter Odense")]
        log.close(timeout=1)

    def test_entries_of_no_configured_tenant_wait(self, tmp_path: Path) -> None:
        """Entries of a tenant the instance has no transport for (a single
        municipality's, say) are retried with a clear error, never sent by guess."""
        single = MinLog.open(tmp_path / "m.sqlite", transport=MemoryTransport(),
                             system_name="Cura", key=KEY, start_worker=False,
                             clock=FixedClock(NOW))
        single.record(access(NORD))
        single.close(timeout=0)
        a = MemoryTransport()
        log = open_log(tmp_path, [aarhus(transport=a)], fill_wait=0)
        result = log.step()
        assert (result.claimed, result.retried, result.acked) == (1, 1, 0)
        assert a.delivered == []
        assert log.stats().last_error is not None
        assert "no transport" in (log.stats().last_error or "")
        log.close(timeout=0)

    @pytest.mark.parametrize(("kw", "says"), [
        ({"tenants": [Tenant(AARHUS, "Aarhus Kommune")]}, "55133018 (Aarhus Kommune): has no "
         "transport"),
        ({"tenants": [aarhus(transport=MemoryTransport())], "transport": MemoryTransport()},
         "transport: with tenants"),
        ({"tenants": [aarhus(transport=MemoryTransport())], "identity": IdentityPolicy()},
         "identity: with tenants"),
        ({}, "transport: required"),
    ], ids=["no transport", "both", "identity", "neither"])
    def test_misconfigured_tenants_are_refused(self, tmp_path: Path, kw: dict[str, Any],
                                               says: str) -> None:
        """Tenants without transports, a transport as well as tenants, or an identity
        policy beside the tenants' own: a ConfigurationError naming it."""
        with pytest.raises(ConfigurationError, match=re.escape(says)):
            MinLog.open(tmp_path / "m.sqlite", system_name="Cura", key=KEY,
                        start_worker=False, **kw)
