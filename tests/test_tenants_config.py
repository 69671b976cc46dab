"""``minlog.toml``: the documented example loads and delivers (docs/tenants.md cannot rot),
and every misconfiguration is a clear error at start-up naming the tenant."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path
from typing import Any

import attrs
import pytest

from minlog import (
    Access,
    AlternativeId,
    ConfigurationError,
    Employee,
    FullName,
    Initials,
    Organisation,
    RateLimit,
    RetryPolicy,
    ValidationError,
)
from minlog.tenants import Installation
from minlog.testing import FakeNSP, FixedClock, make_test_certificate, make_test_pki

ROOT = Path(__file__).resolve().parent.parent
AARHUS, ODENSE = "55133018", "35209115"
P12 = make_test_certificate(AARHUS, "Aarhus Kommune")
PKI = make_test_pki(ODENSE, "Odense Kommune")
SECRET = b"aarhus-hemmelighed-2026"
ANNE = Employee("0101701234", name="Anne Jensen", role="Sygeplejerske")


def documented() -> str:
    """The ``minlog.toml`` example of docs/tenants.md."""
    text = (ROOT / "docs" / "tenants.md").read_text()
    (block,) = [b for b in re.findall(r"^```toml\n(.*?)^```", text, re.S | re.M)
                if "[[tenant]]" in b]
    return block


def files(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The certificates, passwords and secrets the example names, beside it."""
    (folder / "aarhus.p12").write_bytes(P12[0])
    monkeypatch.setenv("AARHUS_P12_PASSWORD", P12[1].decode())
    (folder / "aarhus.secret").write_bytes(SECRET)
    key, chain = PKI.pem()
    (folder / "odense.key").write_bytes(key)
    (folder / "odense-chain.pem").write_bytes(chain)
    (folder / "odense.password").write_bytes(PKI.password + b"\n")


def substitute(block: str, values: dict[str, str]) -> str:
    for shown, used in values.items():
        assert shown in block, f"docs/tenants.md no longer shows {shown!r}: update this test"
        block = block.replace(shown, used)
    return block


def write_example(folder: Path, nsp: FakeNSP | None,
                  monkeypatch: pytest.MonkeyPatch) -> Path:
    files(folder, monkeypatch)
    path = folder / "minlog.toml"
    path.write_text(substitute(documented(), {
        "https://.../minlog2-registration/20250312/RegisterService":
            nsp.service_url if nsp else "https://minlog2.invalid/x",
        "https://.../sts/services/NewSecurityTokenService":
            nsp.sts_url if nsp else "https://sts.invalid/x",
        "/var/lib/eoj/minlog.sqlite.key": str(folder / "minlog.sqlite.key"),
        "/var/lib/eoj/minlog.sqlite": str(folder / "minlog.sqlite"),
    }), encoding="utf-8")
    return path


class TestTheDocumentedExample:
    def test_it_loads_as_documented(self, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
        """Every part of the example is read as docs/tenants.md says."""
        inst = Installation.from_toml(write_example(tmp_path, None, monkeypatch))
        assert inst.store == tmp_path / "minlog.sqlite"
        assert inst.key == tmp_path / "minlog.sqlite.key"
        assert inst.durability == "power"
        assert inst.default_tenant is None
        assert inst.minlog2 is not None
        assert inst.minlog2.system_name == "Cura"
        assert inst.minlog2.options == {"connect_timeout": 10.0, "read_timeout": 60.0}
        assert inst.options == {"batch_size": 500, "horizon_days": 35}
        aarhus, odense = inst.tenants
        assert (aarhus.cvr, aarhus.name, odense.cvr, odense.name) == (
            AARHUS, "Aarhus Kommune", ODENSE, "Odense Kommune")
        assert inst.rate_limits() == {AARHUS: RateLimit.guidance(),
                                      ODENSE: RateLimit(40, 3600.0)}
        assert aarhus.credentials is not None
        assert odense.credentials is not None
        assert odense.credentials.chain == (PKI.intermediate.certificate,)
        assert odense.units == {("SOR", "380000000000030"), ("YDER", "087654")}
        assert aarhus.parents == {("SOR", "380000000000021"): ("SOR", "380000000000002")}
        assert aarhus.identity is not None
        assert isinstance(aarhus.identity.default, FullName)
        assert isinstance(aarhus.identity.units[("SOR", "380000000000002")], AlternativeId)
        assert odense.identity is not None
        assert isinstance(odense.identity.default, Initials)

    def test_it_delivers_each_tenants_logs_under_its_card(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Opened, the example routes each unit to its tenant, shows each tenant's form
        (a team under the addiction centre shows a code), refuses a unit of no tenant,
        and delivers each tenant's logs under its own card."""
        units = {AARHUS: {"380000000000001", "380000000000002", "380000000000021"},
                 ODENSE: {"380000000000030", "087654"}}
        with FakeNSP(cvrs={AARHUS, ODENSE}, units=units) as nsp:
            inst = Installation.from_toml(write_example(tmp_path, nsp, monkeypatch))
            inst = attrs.evolve(inst, tenants=[attrs.evolve(t, rate_limit=None)
                                               for t in inst.tenants])
            now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
            orgs = [Organisation("380000000000001"), Organisation("380000000000021"),
                    Organisation("380000000000030", name="Plejecenter Odense"),
                    Organisation("087654", "YDER", "Tandplejen")]
            with inst.open(poll=0.02, retry=RetryPolicy(initial=0.02, maximum=0.1)) as log:
                for i, org in enumerate(orgs):
                    assert log.record(Access(f"0{i + 1}03303456", ANNE, org, "Opslag", now))
                with pytest.raises(ValidationError) as e:
                    log.record(Access("0903303456", ANNE, Organisation("380000000000099"),
                                      "Opslag", now))
                assert e.value.field == "access.organisation"
                assert log.flush(timeout=30)
            shown = {r.organisation_id: r.user_person_name for r in nsp.received}
            assert shown["380000000000001"] == "Anne Jensen"
            assert (shown["380000000000021"] or "").startswith("Medarbejder ")
            assert shown["380000000000030"] == "AJ, Plejecenter Odense"
            assert shown["087654"] == "AJ, Tandplejen"
            assert {b.cvr for b in nsp.batches} == {AARHUS, ODENSE}
            assert {r.organisation_id for r in nsp.received_for(ODENSE)} == units[ODENSE]
            assert (tmp_path / "minlog.sqlite.key").exists()


BASE = """
[store]
path = "m.sqlite"
[minlog2]
service_url = "https://minlog2.invalid/x"
sts_url = "https://sts.invalid/x"
system_name = "Cura"
"""
AARHUS_TABLE = f"""
[[tenant]]
cvr = "{AARHUS}"
name = "Aarhus Kommune"
pkcs12 = "aarhus.p12"
password_env = "AARHUS_P12_PASSWORD"
units = ["380000000000001"]
"""
ODENSE_TABLE = f"""
[[tenant]]
cvr = "{ODENSE}"
name = "Odense Kommune"
pem_key = "odense.key"
pem_chain = "odense-chain.pem"
password_file = "odense.password"
units = ["380000000000030"]
"""


def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Installation:
    files(tmp_path, monkeypatch)
    (tmp_path / "minlog.toml").write_text(text, encoding="utf-8")
    return Installation.from_toml(tmp_path / "minlog.toml")


class TestMisconfiguration:
    @pytest.mark.parametrize(("edit", "says"), [
        (lambda t: t.replace('pkcs12 = "aarhus.p12"', 'pkcs12 = "missing.p12"'),
         "tenant 55133018 (Aarhus Kommune): tenant[0].pkcs12: [Errno 2]"),
        (lambda t: t.replace("AARHUS_P12_PASSWORD", "MINLOG_TEST_UNSET"),
         "tenant 55133018 (Aarhus Kommune): tenant[0].password_env: MINLOG_TEST_UNSET is "
         "not set"),
        (lambda t: t.replace('password_file = "odense.password"',
                             'password_file = "aarhus.secret"'),
         "tenant 35209115 (Odense Kommune): tenant[1].pem_key: cannot read the PEM "
         "private key: wrong password"),
        (lambda t: t.replace('pem_chain = "odense-chain.pem"\n', ""),
         "tenant 35209115 (Odense Kommune): tenant[1].pem_chain is required"),
        (lambda t: t.replace('units = ["380000000000030"]', 'units = ["380000000000001"]'),
         "tenant[1] 35209115 (Odense Kommune): units: SOR 380000000000001 is also a unit of "
         "tenant 55133018 (Aarhus Kommune)"),
        (lambda t: t.replace(f'cvr = "{ODENSE}"', f'cvr = "{AARHUS}"'),
         "cvr: 55133018 is also the CVR of tenant"),
        (lambda t: t.replace(f'cvr = "{ODENSE}"', "cvr = 35209115"),
         "tenant[1].cvr is required (a string)"),
        (lambda t: t.replace(f'cvr = "{ODENSE}"', 'cvr = "3520911"'),
         "tenant[1].cvr must be the municipality's CVR number"),
        (lambda t: t + 'parents = { "1" = "2", "2" = "1" }\n',
         "tenant[1] 35209115 (Odense Kommune): parents: a cycle: SOR 1 -> SOR 2 -> SOR 1"),
        (lambda t: t + 'rate_limit = { requests = 20 }\n',
         "tenant 35209115 (Odense Kommune): tenant[1].rate_limit must be"),
        (lambda t: t + 'rate_limit = { requests = 0, per = 3600 }\n',
         "tenant[1].rate_limit: RateLimit: requests >= 1"),
        (lambda t: t + 'colour = "blue"\n', "tenant[1]: unknown keys ['colour']"),
        (lambda t: t + '[tenant.identity.unit]\nid = "1"\n',
         "tenant 35209115 (Odense Kommune): identity policy: tenant[1].identity"),
        (lambda t: t + 'default_tenant = "29189846"\n', "tenant[1]: unknown keys"),
        (lambda t: 'default_tenant = "29189846"\n' + t, "default_tenant: must be the CVR"),
        (lambda t: t.replace('path = "m.sqlite"', 'url = "sqlite:///m"'),
         "store.url must be a postgresql:// URL"),
        (lambda t: t.replace('path = "m.sqlite"', 'path = "m.sqlite"\nurl = "postgresql://x"'),
         "store.path (a SQLite file) or store.url"),
        (lambda t: t.replace('path = "m.sqlite"', 'path = "m.sqlite"\ndurability = "disk"'),
         "store.durability: must be"),
        (lambda t: t + "[options]\nbatch_sise = 500\n",
         "options: unknown option batch_sise (did you mean batch_size?)"),
        (lambda t: t + '[options]\nbatch_size = "500"\n', "options.batch_size must be int"),
        (lambda t: t + "[options]\npoll = true\n", "options.poll must be float"),
        (lambda t: t + "[options]\nretry = { initial = 5, maximum = 1 }\n",
         "options.retry: RetryPolicy"),
        (lambda t: t + "colour = 1\n[options]\n", "tenant[1]: unknown keys"),
        (lambda t: t.replace("[minlog2]", "[minlog]"), "unknown keys ['minlog']"),
        (lambda t: t.replace('system_name = "Cura"\n', ""), "minlog2.system_name is required"),
    ], ids=["missing file", "password unset", "wrong password", "half pem", "unit twice",
            "cvr twice", "cvr number", "cvr digits", "cycle", "rate limit", "rate limit 0",
            "unknown key",
            "identity", "misplaced default", "default", "store url", "path and url",
            "durability", "option typo", "option type", "bool", "retry", "after tenant",
            "section", "system name"])
    def test_each_mistake_is_named(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   edit: Any, says: str) -> None:
        """Every mistake in minlog.toml is a ConfigurationError naming the key and, once
        its CVR is read, the tenant; a password is never shown."""
        monkeypatch.delenv("MINLOG_TEST_UNSET", raising=False)
        with pytest.raises(ConfigurationError) as e:
            load(tmp_path, monkeypatch, edit(BASE + AARHUS_TABLE + ODENSE_TABLE))
        assert says in str(e.value)
        assert PKI.password.decode() not in str(e.value)
        assert P12[1].decode() not in str(e.value)
        assert not (tmp_path / "m.sqlite").exists()

    def test_a_wrong_pkcs12_password_names_the_tenant(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A PKCS#12 file that its password does not open: the tenant and the key, never
        the password."""
        files(tmp_path, monkeypatch)
        monkeypatch.setenv("AARHUS_P12_PASSWORD", "hunter2-wrong")
        (tmp_path / "minlog.toml").write_text(BASE + AARHUS_TABLE, encoding="utf-8")
        with pytest.raises(ConfigurationError) as e:
            Installation.from_toml(tmp_path / "minlog.toml")
        assert "tenant 55133018 (Aarhus Kommune): tenant[0].pkcs12: cannot open" in str(e.value)
        assert "hunter2" not in str(e.value)

    def test_an_expired_certificate_is_refused_at_start_up(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A certificate that is not valid now (by the installation's clock) is refused
        when the installation opens, naming the tenant and the date, before the store is
        made; the STS is never asked."""
        inst = load(tmp_path, monkeypatch, BASE + AARHUS_TABLE)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
        with pytest.raises(ConfigurationError) as e:
            inst.open(clock=FixedClock(later))
        assert "tenant[0] 55133018 (Aarhus Kommune): the system certificate expired on" in str(
            e.value)
        earlier = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        with pytest.raises(ConfigurationError, match="not valid before"):
            inst.open(clock=FixedClock(earlier))
        assert not (tmp_path / "m.sqlite").exists()

    def test_credentials_need_the_shared_settings(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without [minlog2], a tenant's credentials cannot make a transport: an error
        naming the tenant, at start-up."""
        text = BASE[:BASE.index("[minlog2]")] + AARHUS_TABLE
        inst = load(tmp_path, monkeypatch, text)
        with pytest.raises(ConfigurationError, match=re.escape(
                "system_name: required")):
            inst.open()
        named = attrs.evolve(inst, system_name="Cura")
        with pytest.raises(ConfigurationError, match=re.escape(
                "tenant[0] 55133018 (Aarhus Kommune): its credentials need the shared")):
            named.open()

    def test_options_are_read_with_their_types(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """[options]: numbers, rate_limit, retry and backlog_warning as MinLog takes
        them."""
        inst = load(tmp_path, monkeypatch, BASE + AARHUS_TABLE + (
            '[options]\nmax_future_skew = 60\nrate_limit = "none"\nbacklog_warning = "none"\n'
            "retry = { initial = 2, maximum = 60 }\nstart_worker = false\n"))
        assert inst.options == {"max_future_skew": 60, "rate_limit": None,
                                "backlog_warning": None, "start_worker": False,
                                "retry": RetryPolicy(initial=2.0, maximum=60.0)}
        with inst.open(exit_timeout=0.0) as log:
            assert log.tenants is not None
            assert [t.cvr for t in log.tenants] == [AARHUS]
            assert log._deliverer.rate_limit is None


class TestTheCommands:
    def test_status_and_drain_serve_an_installation(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """``minlog status --config minlog.toml`` shows a row per tenant with its drain
        time under its own limit; ``minlog drain --config minlog.toml`` sends each
        tenant's logs under its own card."""
        from minlog.cli.main import main

        units = {AARHUS: {"380000000000001"}, ODENSE: {"380000000000030"}}
        with FakeNSP(cvrs={AARHUS, ODENSE}, units=units) as nsp:
            path = write_example(tmp_path, nsp, monkeypatch)
            now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
            with Installation.from_toml(path).open(start_worker=False,
                                                   exit_timeout=0.0) as log:
                for i in range(3):
                    assert log.record(Access(f"0{i + 1}03303456", ANNE,
                                             Organisation("380000000000001"), "Opslag", now))
                assert log.record(Access("0903303456", ANNE,
                                         Organisation("380000000000030"), "Opslag", now))
            db, out = str(tmp_path / "minlog.sqlite"), io.StringIO()
            with monkeypatch.context() as m:  # inspecting needs no credentials
                m.delenv("AARHUS_P12_PASSWORD")
                assert main(["status", db, "--json", "--config", str(path)], out) == 0
            tenants = json.loads(out.getvalue())["tenants"]
            assert {t: r["pending"] for t, r in tenants.items()} == {AARHUS: 3, ODENSE: 1}
            assert tenants[ODENSE]["drain_seconds"] == 0.0  # one request of its 40 an hour
            out = io.StringIO()
            assert main(["status", db], out) == 0
            assert f"\n{AARHUS}" in out.getvalue()
            assert main(["drain", db, "--config", str(path), "--json", "--progress", "0",
                         "--timeout", "30"], io.StringIO()) == 0
        assert {b.cvr: len(b.registrations) for b in nsp.batches} == {AARHUS: 3, ODENSE: 1}

    def test_one_worker_delivers_every_tenant_of_the_installation(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """``minlog worker STORE --config minlog.toml``, as a process: each tenant's logs
        reach the receiver under its own card, and SIGTERM stops it with exit 0."""
        from test_worker import Worker, until

        units = {AARHUS: {"380000000000001"}, ODENSE: {"380000000000030"}}
        with FakeNSP(cvrs={AARHUS, ODENSE}, units=units) as nsp:
            path = write_example(tmp_path, nsp, monkeypatch)
            now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
            with Installation.from_toml(path).open(start_worker=False,
                                                   exit_timeout=0.0) as log:
                for i, org in enumerate(["380000000000001"] * 2 + ["380000000000030"]):
                    assert log.record(Access(f"0{i + 1}03303456", ANNE, Organisation(org),
                                             "Opslag", now))
            worker = Worker(str(tmp_path / "minlog.sqlite"), "--config", str(path),
                            "--fill-wait", "0", "--health-port", "0")
            until(lambda: len(nsp.received) == 3, "delivery of every tenant")
            status, _ = worker.stop()
        assert status == 0
        assert {b.cvr: len(b.registrations) for b in nsp.batches} == {AARHUS: 2, ODENSE: 1}
