"""Conformance: what minlog sends, and what FakeNSP answers, held to the authority's official
schemas (../shared/reference/minlog2, never copied here), to its client's choices and to an
independent XML-DSig implementation (xmlsec1).

Without the official schemas these tests skip (with the reason); in CI
(MINLOG_REQUIRE_REFERENCE=1) they fail instead.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from conftest import REFERENCE, require_reference, require_xmlsec
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from strategies import registration, registrations_at_limits

from minlog import EntryFailure, Registration, TransientDeliveryError
from minlog.minlog2 import Minlog2Transport
from minlog.minlog2 import idcard as _dgws
from minlog.minlog2 import wire as _wire
from minlog.minlog2.official import OfficialSchemas
from minlog.testing import FakeNSP, FixedClock, make_test_certificate

VERSIONS = ["20250312", "20230425"]
NOW = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
CVR = "12345678"
SOAP = f"{{{_wire.SOAP_NS}}}"
SAML = f"{{{_dgws.NS['saml']}}}"
WSSE = f"{{{_dgws.NS['wsse']}}}"
SHA256_URIS = ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
               "http://www.w3.org/2001/04/xmlenc#sha256")
PROFILE = settings(max_examples=200, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def payload(body: bytes) -> etree._Element:
    """The element in the SOAP Body."""
    return etree.fromstring(body).find(f"{SOAP}Body")[0]  # type: ignore[index]


def ours(version: str) -> etree.XMLSchema:
    """minlog's own XSD of ``version`` (shipped in the package)."""
    name = f"schemas/minlog2-registration-{version}.xsd"
    return etree.XMLSchema(etree.fromstring(
        resources.files("minlog.minlog2").joinpath(name).read_bytes()))


def exchange(clock: FixedClock, *, version: str = "20250312",
             **nsp_options: Any) -> tuple[FakeNSP, Minlog2Transport]:
    """A FakeNSP and a transport at ``clock``'s time; the caller sends and closes."""
    nsp = FakeNSP(cvr=CVR, version=version, clock=clock, **nsp_options).start()
    t = Minlog2Transport(service_url=nsp.service_url, sts_url=nsp.sts_url,
                         credentials=make_test_certificate(CVR, "Testkommune", clock=clock),
                         cvr=CVR, system_name="Cura Nexus", care_provider_name="Testkommune",
                         version=version, clock=clock, read_timeout=5.0,
                         digest=nsp_options.get("sts_digest", "sha256"))
    return nsp, t


# --------------------------------------------------------------------------- requests


class TestRequestsAgainstTheOfficialSchemas:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_generated_batches_validate(self, official: OfficialSchemas, version: str) -> None:
        """Batches of registrations at every limit (all optional fields, Danish letters,
        combining marks, emoji, every source of the version, Filter values, OnBehalfOf,
        From/ToDateTime) encode to requests the official XSD of the version accepts, and
        decode back to the same registrations."""
        @PROFILE
        @given(st.lists(registrations_at_limits(version), min_size=1, max_size=4))
        def check(rs: list[Registration]) -> None:
            body = _wire.encode_envelope(rs, version=version)
            assert official.check_registration(payload(body), version) == []
            assert _wire.validate_request(body, version=version) == rs

        check()

    @pytest.mark.parametrize("version", VERSIONS)
    def test_every_field_at_its_limit(self, official: OfficialSchemas, version: str) -> None:
        """One registration with every optional field at exactly its limit validates."""
        r = registration(
            system_name="S" * 25, activity="Å" * 75, reason="r" * 50, addition="a" * 50,
            criticality="c" * 50, organisation_id="o" * 200, organisation_name="N" * 200,
            organisation_id_source="SOR", person_name="P" * 50, correlation_id="c" * 46,
            sequence_number="s" * 36, user_person_name="U" * 50, user_role="R" * 200,
            on_behalf_of_person_identifier="A" * 50,
            on_behalf_of_person_identifier_source="Autorisation",
            on_behalf_of_person_name="B" * 50, on_behalf_of_user_role="O" * 200,
            filters=("f" * 50, "Ikke borger"), source_system_name="x" * 25,
            source_correlation_id="y" * 46)
        body = _wire.encode_envelope([r], version=version)
        assert official.check_registration(payload(body), version) == []

    @pytest.mark.parametrize("version", VERSIONS)
    def test_responses_validate(self, official: OfficialSchemas, version: str) -> None:
        """The answers FakeNSP gives (failures named, unnamed or only counted) are valid
        RegistrationResponses."""
        failures = [EntryFailure("s" * 36, "E1", "tekst"), EntryFailure("", "E2")]
        for body in (_wire.encode_response(3, failures, version=version),
                     _wire.encode_response(3, failures, version=version, list_failures=False),
                     _wire.encode_response(0, [], version=version)):
            assert official.check_registration(payload(body), version) == []


# --------------------------------------------------------------------------- differential

_LENGTHS = [0, 1, 24, 25, 26, 35, 36, 37, 45, 46, 47, 49, 50, 51, 74, 75, 76, 199, 200, 201]
_SOURCES = ["", "CPR", "eCPR", "Autorisation", "EuropeanHealthcareProfessional", "SOR", "YDER",
            "Yder", "SKS", "CVR", "CVR-P", "Kommunekode", "EuropeanHealthcareOrganisation",
            "Sygehus", "cpr", "x" * 200, "x" * 201]
_TIMES = ["2014-12-31T23:59:59Z", "2015-01-01T00:00:00Z", "2015-01-01T00:59:59+01:00",
          "2015-01-01T01:00:00+01:00", "2026-01-01T00:00:00", "2026-02-30T00:00:00Z",
          "26-01-01", "2026-01-01T08:00:00.123456-05:00"]


def _leaves(root: etree._Element) -> list[etree._Element]:
    return [e for e in root.iter() if e is not root and len(e) == 0]


def _mutate(draw: st.DrawFn, root: etree._Element) -> None:
    """One mutation of ``root``, its kind drawn first and then a target it fits."""
    kind = draw(st.sampled_from(["text", "text", "source", "time", "remove", "double", "swap",
                                 "extra", "nest", "drop-source"]))
    elements = [e for e in root.iter() if e is not root]
    sourced = [e for e in elements if e.get("source") is not None]
    times = [e for e in elements if str(e.tag).endswith("DateTime")]
    if kind == "text":
        target = draw(st.sampled_from(_leaves(root)))
        n = draw(st.sampled_from(_LENGTHS))
        target.text = "".join(draw(st.lists(st.sampled_from(["x", "æ", "😀", " ", "\u030a"]),
                                            min_size=n, max_size=n)))
    elif kind == "source" and sourced:
        draw(st.sampled_from(sourced)).set("source", draw(st.sampled_from(_SOURCES)))
    elif kind == "drop-source" and sourced:
        del draw(st.sampled_from(sourced)).attrib["source"]
    elif kind == "time" and times:
        draw(st.sampled_from(times)).text = draw(st.sampled_from(_TIMES))
    elif kind == "remove":
        target = draw(st.sampled_from(elements))
        target.getparent().remove(target)  # type: ignore[union-attr]
    elif kind == "double":
        target = draw(st.sampled_from(elements))
        target.addnext(etree.fromstring(etree.tostring(target)))
    elif kind == "swap":
        target = draw(st.sampled_from(elements))
        if target.getprevious() is not None:
            target.getprevious().addprevious(target)  # type: ignore[union-attr]
    elif kind == "extra":
        etree.SubElement(draw(st.sampled_from(elements)), "Extra").text = "x"
    elif kind == "nest":
        parent = draw(st.sampled_from([e for e in elements if e.tag in ("Source",
                                                                           "LogDataEntry")]
                                      or elements))
        source = etree.Element("Source")
        parent.insert(0, source)
        etree.SubElement(source, draw(st.sampled_from(["SystemName", "CorrelationId"]))
                         ).text = "n" * draw(st.sampled_from(_LENGTHS))


@st.composite
def mutated(draw: st.DrawFn, version: str) -> bytes:
    """A RegistrationRequest (or Response) document, valid or broken by 0-3 mutations:
    texts at and beyond every limit, any source value, missing, doubled or swapped
    elements, impossible times, unknown elements, nested Sources."""
    if draw(st.integers(0, 4)) == 0:
        failures = [EntryFailure(draw(st.sampled_from(["", "s", "s" * 36, "s" * 37])), "E")]
        body = _wire.encode_response(draw(st.integers(0, 3)), failures, version=version)
    else:
        rs = draw(st.lists(registrations_at_limits(version), min_size=1, max_size=2))
        body = _wire.encode_envelope(rs, version=version)
    root = payload(body)
    for _ in range(draw(st.integers(0, 3))):
        if len(root):
            _mutate(draw, root)
    return bytes(etree.tostring(root))


def full(version: str) -> etree._Element:
    """A request whose one entry uses every element (a Source, and a nested one)."""
    r = registration(
        reason="r", addition="a", criticality="c", organisation_name="N", person_name="P",
        correlation_id="c", user_role="R", on_behalf_of_person_identifier="0303303456",
        on_behalf_of_person_identifier_source="CPR", on_behalf_of_person_name="B",
        on_behalf_of_user_role="O", filters=("f",), source_system_name="s",
        source_correlation_id="c")
    root = payload(_wire.encode_envelope([r], version=version))
    source = root.find("LogDataEntry/Source")
    assert source is not None
    nested = etree.SubElement(source, "Source")
    etree.SubElement(nested, "CorrelationId").text = "n"
    etree.SubElement(nested, "SystemName").text = "n"
    return etree.fromstring(etree.tostring(root))


class TestOurSchemasAgreeWithTheOfficialOnes:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_same_verdict_on_generated_documents(self, official: OfficialSchemas,
                                                 version: str) -> None:
        """minlog's own XSD of each version accepts and refuses exactly the documents the
        official XSD does (valid ones and ones broken at every limit)."""
        mine, theirs = ours(version), official.schema(version)
        verdicts: set[bool] = set()

        @PROFILE
        @given(mutated(version))
        def check(document: bytes) -> None:
            tree = etree.fromstring(document)
            verdict = theirs.validate(tree)
            assert mine.validate(tree) == verdict, (document, theirs.error_log)
            verdicts.add(verdict)

        check()
        assert verdicts == {True, False}

    @pytest.mark.parametrize("version", VERSIONS)
    def test_same_verdict_at_every_boundary(self, official: OfficialSchemas,
                                            version: str) -> None:
        """Every element's text at every interesting length, every source attribute at every
        value, every time element at every boundary time: the same verdict from both."""
        mine, theirs = ours(version), official.schema(version)
        cases = 0
        base = full(version)
        for path in [base.getroottree().getelementpath(e) for e in _leaves(base)]:
            values: list[str] = ["x" * n for n in _LENGTHS] + ["å" * 25 + "\u030a"]
            if path.endswith("DateTime"):
                values += _TIMES
            for value in values:
                doc = etree.fromstring(etree.tostring(base))
                doc.find(path).text = value  # type: ignore[union-attr]
                assert mine.validate(doc) == theirs.validate(doc), (path, value)
                cases += 1
            if base.find(path).get("source") is not None:  # type: ignore[union-attr]
                for value in _SOURCES:
                    doc = etree.fromstring(etree.tostring(base))
                    doc.find(path).set("source", value)  # type: ignore[union-attr]
                    assert mine.validate(doc) == theirs.validate(doc), (path, value)
                    cases += 1
        assert cases > 500


# --------------------------------------------------------------------------- ID card


def sts_request(digest: str, clock: FixedClock) -> tuple[bytes, Any]:
    """The STS request minlog sends (as FakeNSP received it), and the client certificate."""
    nsp, t = exchange(clock, sts_digest=digest)
    try:
        t.send([registration()])
    finally:
        t.close()
        nsp.stop()
    return nsp.sts_requests[0], t.credentials.certificate


class TestIdCardAgainstTheOfficialSchemas:
    @pytest.mark.parametrize("digest", ["sha256", "sha1"])
    def test_the_sts_request_parts_validate(self, official: OfficialSchemas,
                                            digest: str) -> None:
        """The STS request's wsse:Security and its signed card validate against the official
        wsse.xsd and saml.xsd (with ds.xsd); with SHA-256, the only complaints of the 2006
        ds.xsd are about the two SHA-256 algorithm URIs."""
        body, _ = sts_request(digest, FixedClock(NOW))
        root = etree.fromstring(body)
        security = root.find(f"{SOAP}Header/{WSSE}Security")
        card = _dgws.card_from_request(body)
        assert security is not None
        assert official.check_security(security, sha256=False) == []
        assert official.check_assertion(card) == []
        strict = official.check_assertion(card, sha256=False)
        if digest == "sha1":
            assert strict == []
        else:
            assert strict
            assert all(any(uri in e for uri in SHA256_URIS) for e in strict), strict

    @pytest.mark.parametrize("digest", ["sha256", "sha1"])
    def test_the_service_request_headers_validate(self, official: OfficialSchemas,
                                                  digest: str) -> None:
        """The service request's wsse:Security (with the STS card) and medcom:Header validate
        against the official wsse.xsd and medcom.xsd."""
        nsp, t = exchange(FixedClock(NOW), sts_digest=digest)
        try:
            t.send([registration()])
        finally:
            t.close()
            nsp.stop()
        header = etree.fromstring(nsp.requests[0]).find(f"{SOAP}Header")
        assert header is not None
        security, medcom = header[0], header[1]
        assert official.check_security(security, sha256=digest == "sha256") == []
        assert official.check_medcom_header(medcom) == []


def xmlsec(document: bytes, certificate: Any, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    program = require_xmlsec()
    (tmp_path / "doc.xml").write_bytes(document)
    (tmp_path / "signer.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return subprocess.run(
        [program, "--verify", "--pubkey-cert-pem", str(tmp_path / "signer.pem"),
         "--id-attr:id", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
         str(tmp_path / "doc.xml")], capture_output=True, text=True)


class TestXmlsec:
    @pytest.mark.parametrize("digest", ["sha256", "sha1"])
    def test_xmlsec1_verifies_the_signed_sts_request(self, digest: str,
                                                     tmp_path: Path) -> None:
        """xmlsec1 verifies our card inside the STS request exactly as sent, for both digest
        algorithms, and refuses it once one byte of the card is changed."""
        body, certificate = sts_request(digest, FixedClock(NOW))
        done = xmlsec(body, certificate, tmp_path)
        assert done.returncode == 0, done.stderr
        tampered = body.replace(b">Testkommune<", b">Testkommunf<", 1)
        assert tampered != body
        assert xmlsec(tampered, certificate, tmp_path).returncode != 0

    @pytest.mark.parametrize("digest", ["sha256", "sha1"])
    @pytest.mark.parametrize("indent", [False, True])
    def test_xmlsec1_verifies_the_card_the_service_receives(self, digest: str, indent: bool,
                                                            tmp_path: Path) -> None:
        """xmlsec1 verifies the STS's card inside the service request as sent."""
        nsp, t = exchange(FixedClock(NOW), sts_digest=digest, sts_indent=indent)
        try:
            t.send([registration()])
        finally:
            t.close()
            nsp.stop()
        done = xmlsec(nsp.requests[0], nsp.federation.certificate, tmp_path)
        assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- FakeNSP


class TestFakeNspWithTheOfficialSchemas:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_delivery_passes_the_official_schemas(self, version: str) -> None:
        """A FakeNSP that validates with the official schemas (body and DGWS headers)
        accepts what minlog sends, for each version."""
        reference = require_reference()
        clock = FixedClock(NOW)
        nsp, t = exchange(clock, version=version, official_schemas=reference,
                          sts_indent=True)
        try:
            rs = [registration(sequence_number=f"{i:032x}",
                               organisation_id_source="Yder" if version == "20230425"
                               else "YDER") for i in range(3)]
            result = t.send(rs)
        finally:
            t.close()
            nsp.stop()
        assert result.failed == ()
        assert nsp.received == rs

    def test_a_request_the_official_schema_refuses_is_refused(self) -> None:
        """A body breaking an official limit is refused as a client fault naming it."""
        clock = FixedClock(NOW)
        nsp, t = exchange(clock, official_schemas=require_reference())
        try:
            t.send([registration()])
            body = nsp.requests[0].replace(b"<SystemName>Cura<",
                                           b"<SystemName>" + b"C" * 26 + b"<")
            status, answer, _ = nsp.handle_service(
                body, {"SOAPAction": "AddRegistrations_20250312"})
        finally:
            t.close()
            nsp.stop()
        assert status == 500
        assert b"SystemName" in answer
        assert b"Client" in answer

    def test_card_problems_get_dgws_faults(self) -> None:
        """An ID card with a broken signature is answered with invalid_signature, a missing
        medcom:Header with missing_required_header (both HTTP 500, faultcode Server)."""
        clock = FixedClock(NOW)
        nsp, t = exchange(clock, official_schemas=require_reference())
        try:
            t.send([registration()])
            good = nsp.requests[0]
            headers = {"SOAPAction": "AddRegistrations_20250312"}
            broken = good.replace(b">Cura Nexus<", b">Cura Nexuz<", 1)
            assert broken != good
            no_medcom = etree.fromstring(good)
            header = no_medcom.find(f"{SOAP}Header")
            assert header is not None
            header.remove(header[1])
            answers = [nsp.handle_service(b, headers) for b in
                       (broken, etree.tostring(no_medcom))]
        finally:
            t.close()
            nsp.stop()
        for (status, body, _), code in zip(answers, ["invalid_signature",
                                                     "missing_required_header"], strict=True):
            assert status == 500
            with pytest.raises(TransientDeliveryError) as e:
                _wire.decode_response(body, status)
            assert e.value.code == f"dgws:{code}"
            assert b"Server</faultcode>" in body


class TestTheReferenceFolder:
    def test_ci_insists_on_the_official_schemas(self, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
        """Without the folder, the tests skip with a reason; with
        MINLOG_REQUIRE_REFERENCE=1 (CI) they fail."""
        import conftest

        monkeypatch.setattr(conftest, "REFERENCE", tmp_path / "absent")
        monkeypatch.delenv("MINLOG_REQUIRE_REFERENCE", raising=False)
        with pytest.raises(pytest.skip.Exception, match="not at"):
            conftest.require_reference()
        monkeypatch.setenv("MINLOG_REQUIRE_REFERENCE", "1")
        with pytest.raises(pytest.fail.Exception, match="MINLOG_REQUIRE_REFERENCE"):
            conftest.require_reference()

    def test_the_folder_is_never_copied_into_the_repository(self) -> None:
        """The official files are read from beside the repository, not from inside it."""
        repository = Path(__file__).resolve().parent.parent
        assert not REFERENCE.resolve().is_relative_to(repository)
        tracked = subprocess.run(["git", "ls-files"], cwd=repository, capture_output=True,
                                 text=True, check=True).stdout.split()
        official = {"ds.xsd", "saml.xsd", "wsse.xsd", "wsu.xsd", "medcom.xsd",
                    "minlog2-registration_20250312.xsd", "minlog2-registration_20230425.xsd",
                    "minlog-20250312.wsdl", "minlog-20230425.wsdl"}
        assert not [f for f in tracked if Path(f).name in official]

    def test_a_folder_without_the_schemas_is_a_configuration_error(self,
                                                                    tmp_path: Path) -> None:
        """OfficialSchemas names the files it lacks."""
        from minlog import ConfigurationError

        with pytest.raises(ConfigurationError, match=r"medcom\.xsd"):
            OfficialSchemas(tmp_path)
