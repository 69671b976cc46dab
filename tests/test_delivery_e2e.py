"""End to end over real HTTP on loopback: MinLog -> Minlog2Transport -> FakeNSP, with faults.

Every test ends the same way: each accepted registration was received exactly once, or is
a dead letter with its reason. Nothing is lost.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minlog import Access, Employee, MinLog, Organisation, RetryPolicy
from minlog.minlog2 import Minlog2Transport
from minlog.testing import FakeNSP, Fault, make_test_certificate

CVR = "12345678"
ORG = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
CERT = make_test_certificate(CVR, "Testkommune")
N = 60


def accesses(n: int = N) -> list[Access]:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    return [Access(f"{1 + i % 28:02d}0{1 + i % 9}{60 + i % 30:02d}4321",
                   Employee(f"0101{70 + i % 20:02d}{i:04d}", name=f"Medarbejder {i}"),
                   ORG, "Opslag i Fælles Stamkort", now) for i in range(n)]


@pytest.fixture
def nsp() -> Iterator[FakeNSP]:
    with FakeNSP(cvr=CVR) as fake:
        yield fake


def transport(nsp: FakeNSP, **kw: Any) -> Minlog2Transport:
    kw.setdefault("read_timeout", 2.0)
    kw.setdefault("credentials", CERT)
    return Minlog2Transport(service_url=nsp.service_url, sts_url=nsp.sts_url, cvr=CVR,
                            system_name="Cura", care_provider_name="Testkommune", **kw)


def run(tmp_path: Path, nsp: FakeNSP, *, batch_size: int = 20, timeout: float = 30,
        threads: int = 1, **kw: Any) -> tuple[MinLog, list[Access]]:
    log = MinLog.open(tmp_path / "m.sqlite", transport=transport(nsp, **kw), system_name="Cura",
                      batch_size=batch_size, poll=0.02, delivery_threads=threads,
                      retry=RetryPolicy(initial=0.02, maximum=0.1, jitter=0.1))
    batch = accesses()
    assert all(log.record_many(batch))
    log.flush(timeout=timeout)
    return log, batch


def assert_nothing_lost(log: MinLog, nsp: FakeNSP, expected: int = N) -> list[Any]:
    counts = collections.Counter(r.sequence_number for r in nsp.received)
    assert all(c == 1 for c in counts.values()), "a registration was received twice"
    dead = log.dead_letters(1000)
    dead_seqs = {d.registration.sequence_number for d in dead if d.registration}
    assert not dead_seqs & set(counts)
    assert len(counts) + len(dead) == expected
    s = log.stats()
    assert (s.pending, s.in_flight) == (0, 0)
    log.close(timeout=1)
    return dead


class TestHappyPath:
    def test_everything_arrives_once_with_one_card(self, tmp_path: Path, nsp: FakeNSP) -> None:
        """Batches of 20 arrive intact; one STS card serves them all."""
        log, batch = run(tmp_path, nsp)
        assert assert_nothing_lost(log, nsp) == []
        assert nsp.cards_issued == 1
        assert nsp.calls == 3
        got = {r.person_identifier for r in nsp.received}
        assert got == {a.citizen for a in batch}

    def test_two_delivery_threads_still_send_each_entry_once(self, tmp_path: Path,
                                                             nsp: FakeNSP) -> None:
        """With two delivery threads, batches go in parallel and none is sent twice."""
        nsp.inject(Fault("latency", seconds=0.05, times=3))
        log, _ = run(tmp_path, nsp, batch_size=5, threads=2)
        assert assert_nothing_lost(log, nsp) == []
        assert nsp.calls >= N // 5

    def test_versioned_soap_action_and_old_schema(self, tmp_path: Path) -> None:
        """Schema 20230425 and a versioned SOAPAction work end to end."""
        with FakeNSP(cvr=CVR, version="20230425") as old:
            log, _ = run(tmp_path, old, version="20230425",
                         soap_action="AddRegistrations_20230425")
            assert_nothing_lost(log, old)


class TestTransientFaults:
    @pytest.mark.parametrize("fault", [
        Fault("http500", times=2), Fault("http503"), Fault("http429", seconds=0.2),
        Fault("drop", times=2), Fault("latency", seconds=0.3),
        Fault("soap-fault", code="soap:Server", text="busy"),
    ], ids=lambda f: f.kind)
    def test_retried_until_delivered(self, tmp_path: Path, nsp: FakeNSP, fault: Fault) -> None:
        """Outages, overload and dropped connections delay delivery; nothing is lost."""
        nsp.inject(fault)
        log, _ = run(tmp_path, nsp)
        assert assert_nothing_lost(log, nsp) == []

    def test_timeout_is_retried(self, tmp_path: Path, nsp: FakeNSP) -> None:
        """A receiver slower than the read timeout is retried, not dropped."""
        nsp.inject(Fault("timeout", seconds=1.0))
        log, _ = run(tmp_path, nsp, read_timeout=0.3)
        assert log.stats().last_error is not None
        assert assert_nothing_lost(log, nsp) == []


class TestPermanentFaults:
    def test_rejected_entries_are_dead_letters(self, tmp_path: Path, nsp: FakeNSP) -> None:
        """Entries the receiver refuses become dead letters with its fault code."""
        nsp.reject = lambda r: "E-DUP" if r.user_person_identifier.endswith("0007") else None
        log, _ = run(tmp_path, nsp)
        dead = assert_nothing_lost(log, nsp)
        assert [d.code for d in dead] == ["E-DUP"]

    def test_malformed_batch_is_split_to_isolate_the_bad_entry(self, tmp_path: Path,
                                                               nsp: FakeNSP) -> None:
        """A request refused as a whole is split until only the bad entry is refused."""
        def refuse(rs: list[Any]) -> tuple[str, str] | None:
            if any(r.user_person_identifier.endswith("0013") for r in rs):
                return ("soap:Client", "entry 13 is malformed")
            return None
        nsp.refuse_request = refuse
        log, _ = run(tmp_path, nsp)
        dead = assert_nothing_lost(log, nsp)
        assert [(d.code, d.text) for d in dead] == [
            ("soap:Client", "SOAP fault soap:Client: entry 13 is malformed")]


class TestCards:
    def test_expired_card_is_renewed(self, tmp_path: Path, nsp: FakeNSP) -> None:
        """After the service refuses the card, a new one is fetched and sending goes on."""
        t = transport(nsp)
        log = MinLog.open(tmp_path / "m.sqlite", transport=t, system_name="Cura",
                          batch_size=20, poll=0.02,
                          retry=RetryPolicy(initial=0.02, maximum=0.1, jitter=0.1))
        batch = accesses()
        log.record_many(batch[:20])
        assert log.flush(timeout=10)
        nsp.expire_cards()
        log.record_many(batch[20:])
        assert log.flush(timeout=10)
        assert nsp.cards_issued == 2
        assert assert_nothing_lost(log, nsp) == []

    def test_wrong_cvr_is_never_accepted(self, tmp_path: Path) -> None:
        """A card naming another organisation is refused; entries wait in the outbox."""
        with FakeNSP(cvr="87654321") as other:
            log = MinLog.open(tmp_path / "m.sqlite", transport=transport(other),
                              system_name="Cura", poll=0.02,
                              retry=RetryPolicy(initial=0.02, maximum=0.05))
            log.record_many(accesses(5))
            assert log.flush(timeout=1) is False
            assert other.received == []
            assert log.stats().pending + log.stats().in_flight == 5
            log.close(timeout=0.5)


class TestTransportRules:
    def test_plain_http_only_on_loopback(self) -> None:
        """TLS is required except on loopback (the test receiver)."""
        from minlog import ConfigurationError
        with pytest.raises(ConfigurationError):
            Minlog2Transport(service_url="http://minlog.example/x", sts_url="https://s/x",
                             credentials=CERT, cvr=CVR, system_name="C",
                             care_provider_name="K")

    def test_custom_ca_bundle_and_client_certificate(self, tmp_path: Path) -> None:
        """A CA bundle is trusted for TLS and the system certificate can be the client's."""
        from cryptography.hazmat.primitives import serialization

        from minlog.testing import make_test_federation

        ca = make_test_federation().certificate
        (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        t = Minlog2Transport(service_url="https://minlog.example/x", sts_url="https://s/x",
                             credentials=CERT, cvr=CVR, system_name="C", care_provider_name="K",
                             ca_bundle=tmp_path / "ca.pem", client_certificate=True)
        subjects = [dict(x[0] for x in c["subject"]) for c in t._ssl.get_ca_certs()]
        assert {"commonName": "minlog test STS", "organizationName": "minlog test"} in subjects
        assert t._ssl.verify_mode.name == "CERT_REQUIRED"
        t.close()


#: STS answers laid out as different STSs might write them.
STS_LAYOUTS: dict[str, dict[str, Any]] = {
    "indented": {"sts_indent": True},
    "other-prefixes": {"sts_prefixes": {"saml": "saml2", "ds": "dsig"}},
    "declared-on-ancestors": {"sts_namespaces_on_envelope": True},
    "indented-prefixed-on-ancestors": {"sts_indent": True, "sts_namespaces_on_envelope": True,
                                       "sts_prefixes": {"saml": "a", "ds": "b"}},
    "indented-sha1": {"sts_indent": True, "sts_digest": "sha1"},
}


def assertion_bytes(document: bytes) -> bytes:
    """The bytes of the one saml:Assertion in ``document``, as written there."""
    import re

    found = re.search(rb"<(\w+:)?Assertion[\s>].*?</\1Assertion>", document, re.DOTALL)
    assert found is not None
    return found.group(0)


def xmlsec_verify(document: bytes, certificate: Any, tmp_path: Path) -> None:
    """xmlsec1 (an independent XML-DSig implementation) verifies the card in ``document``."""
    import subprocess

    from conftest import require_xmlsec
    from cryptography.hazmat.primitives import serialization

    xmlsec = require_xmlsec()
    (tmp_path / "doc.xml").write_bytes(document)
    (tmp_path / "signer.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    done = subprocess.run(
        [xmlsec, "--verify", "--pubkey-cert-pem", str(tmp_path / "signer.pem"),
         "--id-attr:id", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
         str(tmp_path / "doc.xml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


class TestStsCardBytes:
    @pytest.mark.parametrize("layout", sorted(STS_LAYOUTS))
    def test_the_card_reaches_the_service_byte_for_byte(self, tmp_path: Path,
                                                         layout: str) -> None:
        """However the STS writes its answer, the service receives the card's exact bytes
        and its signature holds (for FakeNSP and for xmlsec1)."""
        from strategies import registration

        from minlog.minlog2 import idcard as _dgws

        with FakeNSP(cvr=CVR, **STS_LAYOUTS[layout]) as nsp:
            t = transport(nsp)
            try:
                t.send([registration()])
                t.send([registration(sequence_number="cd" * 16)])
            finally:
                t.close()
            assert len(nsp.received) == 2
            assert nsp.cards_issued == 1
            issued = assertion_bytes(nsp.sts_answers[0])
            for request in nsp.requests:
                assert assertion_bytes(request) == issued
                card = _dgws.card_from_request(request)
                _dgws.verify(card, trusted=[nsp.federation.certificate])
            xmlsec_verify(nsp.requests[0], nsp.federation.certificate, tmp_path)


def one(**changes: Any) -> Any:
    from strategies import registration

    return [registration(**changes)]


class TestDgwsCardFaults:
    def test_an_expired_card_is_renewed_once_and_resent_at_once(self) -> None:
        """A DGWS expired_idcard fault (HTTP 500, faultcode Server, medcom:FaultCode) makes
        the transport fetch a new card and send again within the same call."""
        with FakeNSP(cvr=CVR) as nsp:
            t = transport(nsp)
            t.send(one())
            nsp.expire_cards()
            t.send(one(sequence_number="cd" * 16))
            t.close()
            assert (nsp.cards_issued, nsp.calls, len(nsp.received)) == (2, 3, 2)

    @pytest.mark.parametrize("code", ["expired_idcard", "invalid_idcard", "invalid_signature"])
    def test_each_card_fault_code_renews_the_card(self, code: str) -> None:
        """Each DGWS fault code about the card renews it, whatever the fault string says."""
        with FakeNSP(cvr=CVR) as nsp:
            t = transport(nsp)
            t.send(one())
            nsp.inject(Fault("soap-fault", code="soapenv:Server", text="nope", dgws_code=code))
            t.send(one(sequence_number="cd" * 16))
            t.close()
            assert (nsp.cards_issued, len(nsp.received)) == (2, 2)

    def test_a_ws_security_token_fault_renews_the_card_too(self) -> None:
        """A gateway without DGWS codes (FakeNSP(dgws_faults=False)) refusing the card with
        wsse:InvalidSecurityToken also gets a new card at once."""
        with FakeNSP(cvr=CVR, dgws_faults=False) as nsp:
            t = transport(nsp)
            t.send(one())
            nsp.expire_cards()
            t.send(one(sequence_number="cd" * 16))
            t.close()
            assert (nsp.cards_issued, nsp.calls, len(nsp.received)) == (2, 3, 2)

    def test_a_fresh_card_refused_again_waits_for_the_retry_policy(self) -> None:
        """A card refused right after renewal is not renewed in a loop: the call fails
        (transient, with the DGWS code) and the delivery loop's backoff decides when."""
        from minlog import TransientDeliveryError

        with FakeNSP(cvr=CVR) as nsp:
            t = transport(nsp)
            nsp.inject(Fault("soap-fault", code="soapenv:Server", text="nope", times=5,
                             dgws_code="invalid_idcard"))
            with pytest.raises(TransientDeliveryError) as e:
                t.send(one())
            t.close()
            assert e.value.code == "dgws:invalid_idcard"
            assert e.value.retry_after is None
            assert (nsp.cards_issued, nsp.calls) == (2, 2)

    def test_not_authorized_is_reported_not_renewed(self) -> None:
        """not_authorized (a card naming another organisation) is not cured by a new card:
        no renewal, a transient error naming the code, entries wait in the outbox."""
        from minlog import TransientDeliveryError

        with FakeNSP(cvr="87654321") as nsp:
            t = transport(nsp)
            with pytest.raises(TransientDeliveryError) as e:
                t.send(one())
            t.close()
            assert e.value.code == "dgws:not_authorized"
            assert nsp.cards_issued == 1

    def test_a_card_the_sts_refuses_is_an_operator_visible_error(
            self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """When the STS itself refuses our card, delivery stops with an error an operator
        sees (stats().last_error, an ERROR log line), entries stay, and the STS is asked
        again only when the retry policy says so."""
        with FakeNSP(cvr=CVR, accept_digests=("sha1",)) as nsp:
            log = MinLog.open(tmp_path / "m.sqlite", transport=transport(nsp),
                              system_name="Cura", poll=0.02,
                              retry=RetryPolicy(initial=0.2, maximum=0.2, jitter=0.0))
            log.record_many(accesses(3))
            assert log.flush(timeout=0.5) is False
            s = log.stats()
            assert s.last_error is not None
            assert "STS refused" in s.last_error
            assert s.pending + s.in_flight == 3
            assert 1 <= nsp.cards_refused <= 4
            assert any(r.levelname == "ERROR" and "STS refused" in r.getMessage()
                       for r in caplog.records)
            log.close(timeout=0.5)


class TestUnattributedFailures:
    @pytest.mark.parametrize("detail", ["unnamed", "count-only"])
    def test_a_failure_naming_no_entry_is_found_not_acked(self, tmp_path: Path,
                                                          detail: str) -> None:
        """When the receiver reports a failure without SequenceNumber (or only counts it),
        the batch is split until the failed entry is found and dead-lettered, never counted
        as delivered, and stats() counts the unattributed failures (entries of unknown fate
        sent again may arrive twice, at most once per halving of their batch)."""
        with FakeNSP(cvr=CVR, failure_detail=detail) as nsp:  # type: ignore[arg-type]
            nsp.reject = (lambda r: "E-UNNAMED"
                          if r.user_person_identifier.endswith("0007") else None)
            log, _ = run(tmp_path, nsp)
            s = log.stats()
            assert s.unattributed >= 1
            assert (s.pending, s.in_flight, s.dead, s.delivered) == (0, 0, 1, N - 1)
            dead = log.dead_letters(10)
            code = "E-UNNAMED" if detail == "unnamed" else "minlog:unattributed"
            assert [d.code for d in dead] == [code]
            assert dead[0].registration is not None
            assert dead[0].registration.user_person_identifier.endswith("0007")
            counts = collections.Counter(r.sequence_number for r in nsp.received)
            assert len(counts) == N - 1
            assert dead[0].registration.sequence_number not in counts
            assert max(counts.values()) <= 1 + 5  # a batch of 20 halves at most 5 times
            log.close(timeout=1)


class TestSoapAction:
    @pytest.mark.parametrize("version", ["20250312", "20230425"])
    def test_the_default_is_the_decoupling_components_versioned_action(self,
                                                                       version: str) -> None:
        """By default the SOAPAction is AddRegistrations_<version>, as the authority's client
        sends it to NSP's decoupling component (which routes on it)."""
        with FakeNSP(cvr=CVR, version=version) as nsp:
            t = transport(nsp, version=version)
            t.send(one())
            t.close()
            assert nsp.headers[0]["SOAPAction"] == f"AddRegistrations_{version}"
            assert nsp.headers[0]["Content-Type"] == "text/xml;charset=utf-8"

    def test_the_wsdls_plain_action_can_be_chosen(self) -> None:
        """soap_action="AddRegistrations" sends the WSDL's own action."""
        with FakeNSP(cvr=CVR) as nsp:
            t = transport(nsp, soap_action="AddRegistrations")
            t.send(one())
            t.close()
            assert nsp.headers[0]["SOAPAction"] == "AddRegistrations"

    def test_fakensp_refuses_an_action_it_does_not_route(self) -> None:
        """A FakeNSP told to accept only the WSDL's action refuses the versioned one with a
        client fault, as a component routing on SOAPAction would."""
        from minlog import PermanentDeliveryError

        with FakeNSP(cvr=CVR, soap_actions=("AddRegistrations",)) as nsp:
            t = transport(nsp)
            with pytest.raises(PermanentDeliveryError, match="SOAPAction"):
                t.send(one())
            t.close()
            assert nsp.received == []

    @pytest.mark.parametrize("action", ["AddRegistrations_20230425", "addRegistrations", ""])
    def test_any_other_action_is_a_configuration_error(self, action: str) -> None:
        """Only the two forms exist, and the versioned one must name the configured version."""
        from minlog import ConfigurationError

        with pytest.raises(ConfigurationError, match="soap_action"):
            Minlog2Transport(service_url="https://m/x", sts_url="https://s/x", credentials=CERT,
                             cvr=CVR, system_name="C", care_provider_name="K",
                             soap_action=action)


class TestCertificateChain:
    def test_the_whole_pkcs12_chain_is_presented_in_tls(self, tmp_path: Path) -> None:
        """The intermediate CAs of a PKCS#12 file (OCES3) are sent in the TLS handshake, so
        a server trusting only the root accepts the system certificate."""
        from minlog.testing import make_test_pki

        pki = make_test_pki(CVR, "Testkommune")
        (tmp_path / "root.pem").write_bytes(pki.root_pem())
        with FakeNSP(cvr=CVR, ssl_context=pki.server_context()) as nsp:
            t = transport(nsp, credentials=pki.pkcs12(), client_certificate=True,
                          ca_bundle=tmp_path / "root.pem")
            t.send(one())
            t.close()
            assert len(nsp.received) == 1

    def test_a_pem_key_and_chain_work_as_a_pkcs12_file_does(self, tmp_path: Path) -> None:
        """An (encrypted) PEM key with a PEM chain gives the same credentials, chain included."""
        from minlog.minlog2.idcard import load_pem
        from minlog.testing import make_test_pki

        pki = make_test_pki(CVR, "Testkommune")
        key, chain = pki.pem()
        credentials = load_pem(key, chain, pki.password)
        assert credentials.certificate == pki.system.certificate
        assert credentials.chain == (pki.intermediate.certificate,)
        (tmp_path / "root.pem").write_bytes(pki.root_pem())
        with FakeNSP(cvr=CVR, ssl_context=pki.server_context()) as nsp:
            t = transport(nsp, credentials=credentials, client_certificate=True,
                          ca_bundle=tmp_path / "root.pem")
            t.send(one())
            t.close()
            assert len(nsp.received) == 1

    def test_a_pem_key_that_is_not_the_certificates_is_refused(self) -> None:
        """The key must belong to the first certificate of the chain; a wrong password or
        file is refused without showing the password."""
        from minlog import ConfigurationError
        from minlog.minlog2.idcard import load_pem
        from minlog.testing import make_test_pki

        one_pki, other = make_test_pki(CVR, "A"), make_test_pki(CVR, "B")
        with pytest.raises(ConfigurationError, match="pem_key"):
            load_pem(one_pki.pem()[0], other.pem()[1], one_pki.password)
        with pytest.raises(ConfigurationError, match="pem_key") as e:
            load_pem(one_pki.pem()[0], one_pki.pem()[1], b"hunter2-wrong")
        assert "hunter2" not in str(e.value)
        with pytest.raises(ConfigurationError, match="pem_chain"):
            load_pem(one_pki.pem()[0], b"not a certificate", one_pki.password)

    def test_the_toml_config_takes_pem_files(self, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """pem_key and pem_chain (with password_env for the key) configure the transport,
        soap_action and digest too."""
        from minlog.config import transport_from_toml
        from minlog.testing import make_test_pki

        pki = make_test_pki(CVR, "Testkommune")
        key, chain = pki.pem()
        (tmp_path / "system.key").write_bytes(key)
        (tmp_path / "chain.pem").write_bytes(chain)
        (tmp_path / "root.pem").write_bytes(pki.root_pem())
        monkeypatch.setenv("KEY_PASSWORD", pki.password.decode())
        with FakeNSP(cvr=CVR, ssl_context=pki.server_context()) as nsp:
            (tmp_path / "minlog.toml").write_text(
                "[minlog2]\n"
                f'service_url = "{nsp.service_url}"\nsts_url = "{nsp.sts_url}"\n'
                'pem_key = "system.key"\npem_chain = "chain.pem"\n'
                'password_env = "KEY_PASSWORD"\ncvr = "12345678"\nsystem_name = "Cura"\n'
                'care_provider_name = "Testkommune"\nca_bundle = "root.pem"\n'
                'client_certificate = true\nsoap_action = "AddRegistrations"\n'
                'digest = "sha1"\n')
            t = transport_from_toml(tmp_path / "minlog.toml")
            t.send(one())
            t.close()
            assert len(nsp.received) == 1
            assert nsp.headers[0]["SOAPAction"] == "AddRegistrations"
            assert (t.digest, t.credentials.chain) == ("sha1", (pki.intermediate.certificate,))

    @pytest.mark.parametrize(("table", "says"), [
        ('pkcs12 = "a.p12"\npem_key = "k.pem"\npem_chain = "c.pem"', "not both"),
        ('pem_key = "k.pem"', "pem_chain"),
        ("", "pkcs12"),
    ])
    def test_the_config_names_a_missing_or_doubled_credential(self, tmp_path: Path,
                                                               table: str, says: str) -> None:
        """Exactly one of pkcs12 or pem_key + pem_chain; a mistake names the keys."""
        from minlog import ConfigurationError
        from minlog.config import transport_from_toml

        (tmp_path / "c.toml").write_text(
            '[minlog2]\nservice_url = "https://m/x"\nsts_url = "https://s/x"\ncvr = "12345678"\n'
            f'system_name = "Cura"\ncare_provider_name = "K"\n{table}\n')
        with pytest.raises(ConfigurationError, match=says):
            transport_from_toml(tmp_path / "c.toml")
