"""DGWS system ID card: content, signature (ours and xmlsec1's verdict), STS, cache."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from conftest import require_xmlsec
from cryptography.hazmat.primitives import serialization
from lxml import etree

from minlog import ConfigurationError
from minlog.minlog2 import idcard as _dgws
from minlog.testing import (
    FakeNSP,
    FixedClock,
    issue_card,
    make_test_certificate,
    make_test_federation,
)

NOW = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
CLOCK = FixedClock(NOW)
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"


@pytest.fixture(scope="module")
def creds() -> _dgws.SystemCredentials:
    data, password = make_test_certificate("12345678", "Testkommune", clock=CLOCK)
    return _dgws.load_pkcs12(data, password)


def card(creds: _dgws.SystemCredentials, **kw: object) -> etree._Element:
    return _dgws.build_id_card(creds, cvr="12345678", system_name="Cura",
                               care_provider_name="Testkommune", now=NOW, **kw)  # type: ignore[arg-type]


def attributes(c: etree._Element) -> dict[str, str | None]:
    return {a.get("Name") or "": a.findtext(f"{SAML}AttributeValue")
            for a in c.iter(f"{SAML}Attribute")}


class TestCard:
    def test_content_follows_dgws(self, creds: _dgws.SystemCredentials) -> None:
        """The card names the CVR, is a level-3 system card, and hashes the certificate
        (SHA-256 by default, SHA-1 on request), in DGWS's two attribute statements."""
        c = card(creds)
        assert c.get("id") == "IDCard"
        name_id = c.find(f"{SAML}Subject/{SAML}NameID")
        assert name_id is not None
        assert (name_id.get("Format"), name_id.text) == ("medcom:cvrnumber", "12345678")
        a = attributes(c)
        assert a["sosi:IDCardVersion"] == "1.0.1"
        assert a["sosi:IDCardType"] == "system"
        assert a["sosi:AuthenticationLevel"] == "3"
        assert a["medcom:ITSystemName"] == "Cura"
        assert a["medcom:CareProviderID"] == "12345678"
        assert a["medcom:CareProviderName"] == "Testkommune"
        import base64
        import hashlib
        der = creds.certificate.public_bytes(serialization.Encoding.DER)
        assert a["sosi:OCESCertHash"] == base64.b64encode(hashlib.sha256(der).digest()).decode()
        sha1 = attributes(card(creds, digest="sha1"))["sosi:OCESCertHash"]
        assert sha1 == base64.b64encode(hashlib.sha1(der).digest()).decode()  # noqa: S324
        statements = {s.get("id"): [a.get("Name") for a in s]
                      for s in c.iter(f"{SAML}AttributeStatement")}
        assert statements == {
            "IDCardData": ["sosi:IDCardID", "sosi:IDCardVersion", "sosi:IDCardType",
                           "sosi:AuthenticationLevel", "sosi:OCESCertHash"],
            "SystemLog": ["medcom:ITSystemName", "medcom:CareProviderID",
                          "medcom:CareProviderName"]}
        assert c.findtext(f"{SAML}Issuer") == "minlog"
        nb, na, cvr = _dgws.card_facts(c)
        assert (nb, na - nb, cvr) == (NOW, dt.timedelta(hours=24), "12345678")

    def test_bad_cvr_is_refused(self, creds: _dgws.SystemCredentials) -> None:
        """A CVR must be 8 digits."""
        with pytest.raises(ConfigurationError):
            _dgws.build_id_card(creds, cvr="1234", system_name="x", care_provider_name="y",
                                now=NOW)

    @pytest.mark.parametrize("issuer", ["Cura Nexus", "", "1minlog", "a:b", "Ølvir"])
    def test_an_issuer_that_is_no_ncname_is_refused(self, creds: _dgws.SystemCredentials,
                                                    issuer: str) -> None:
        """saml:Issuer must be an xs:NCName; anything else is a ConfigurationError naming it."""
        with pytest.raises(ConfigurationError, match="issuer"):
            card(creds, issuer=issuer)

    def test_an_unknown_digest_is_refused(self, creds: _dgws.SystemCredentials) -> None:
        """Only the SHA-256 and SHA-1 profiles exist."""
        with pytest.raises(ConfigurationError, match="digest"):
            card(creds, digest="md5")

    def test_wrong_pkcs12_password(self) -> None:
        """A wrong password is a ConfigurationError that does not echo the password."""
        data, _ = make_test_certificate("12345678", "Testkommune", clock=CLOCK)
        with pytest.raises(ConfigurationError) as e:
            _dgws.load_pkcs12(data, b"hunter2-wrong")
        assert "hunter2" not in str(e.value)


class TestSignature:
    @pytest.mark.parametrize("digest", ["sha256", "sha1"])
    def test_sign_then_verify(self, creds: _dgws.SystemCredentials, digest: str) -> None:
        """A signed card verifies and names its signer."""
        c = _dgws.sign(card(creds, digest=digest), creds, digest=digest)
        assert _dgws.verify(c) == creds.certificate
        assert _dgws.verify(c, trusted=[creds.certificate]) == creds.certificate

    def test_signature_survives_embedding(self, creds: _dgws.SystemCredentials) -> None:
        """Exclusive C14N: the card still verifies inside another document."""
        c = _dgws.sign(card(creds), creds)
        wrapper = etree.Element("{urn:x}Outer", nsmap={"x": "urn:x"})
        wrapper.append(c)
        reparsed = etree.fromstring(etree.tostring(wrapper))
        inner = reparsed.find(f"{SAML}Assertion")
        assert inner is not None
        _dgws.verify(inner)

    @pytest.mark.parametrize("attribute", ["sosi:IDCardType", "medcom:CareProviderID",
                                           "sosi:AuthenticationLevel"])
    def test_tampering_breaks_verification(self, creds: _dgws.SystemCredentials,
                                           attribute: str) -> None:
        """Changing any attribute after signing is detected."""
        c = _dgws.sign(card(creds), creds)
        for a in c.iter(f"{SAML}Attribute"):
            if a.get("Name") == attribute:
                value = a.find(f"{SAML}AttributeValue")
                assert value is not None
                value.text = "9"
        with pytest.raises(_dgws.CardRejected):
            _dgws.verify(c)

    def test_untrusted_signer_is_refused(self, creds: _dgws.SystemCredentials) -> None:
        """A card signed by someone else than the trusted federation is refused."""
        c = _dgws.sign(card(creds), creds)
        with pytest.raises(_dgws.CardRejected):
            _dgws.verify(c, trusted=[make_test_federation(clock=CLOCK).certificate])

    @pytest.mark.parametrize("digest", ["sha256", "sha1"])
    def test_xmlsec1_verifies_our_signature(self, creds: _dgws.SystemCredentials,
                                            digest: str, tmp_path: Path) -> None:
        """An independent XML-DSig implementation (xmlsec1) accepts our signature."""
        xmlsec = require_xmlsec()
        c = _dgws.sign(card(creds, digest=digest), creds, digest=digest)
        (tmp_path / "card.xml").write_bytes(etree.tostring(c, xml_declaration=True,
                                                           encoding="UTF-8"))
        (tmp_path / "cert.pem").write_bytes(
            creds.certificate.public_bytes(serialization.Encoding.PEM))
        cmd = [xmlsec, "--verify", "--pubkey-cert-pem", str(tmp_path / "cert.pem"),
               "--id-attr:id", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
               str(tmp_path / "card.xml")]
        ok = subprocess.run(cmd, capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
        tampered = (tmp_path / "card.xml").read_text().replace("12345678", "87654321", 1)
        (tmp_path / "card.xml").write_text(tampered)
        assert subprocess.run(cmd, capture_output=True).returncode != 0


class TestSts:
    def test_round_trip(self, creds: _dgws.SystemCredentials) -> None:
        """The STS verifies our card and issues one it signed, for the same CVR."""
        fed = make_test_federation(clock=CLOCK)
        signed = _dgws.sign(card(creds), creds)
        answer = issue_card(fed, _dgws.request_security_token(signed, now=NOW), clock=CLOCK,
                            validity=dt.timedelta(hours=8))
        issued = _dgws.parse_security_token_response(answer)
        assert issued.not_on_or_after == NOW + dt.timedelta(hours=8)
        element = issued.element()
        assert _dgws.verify(element, trusted=[fed.certificate]) == fed.certificate
        assert _dgws.card_facts(element)[2] == "12345678"
        header = etree.fromstring(b"<h>" + _dgws.security_header(issued, now=NOW) + b"</h>")
        assert [etree.QName(h).localname for h in header] == ["Security", "Header"]

    def test_the_card_is_kept_as_the_exact_bytes_of_the_answer(
            self, creds: _dgws.SystemCredentials) -> None:
        """The issued card is the byte slice of the STS answer, even when comments, character
        references and look-alike text surround it, and its declarations in scope go along."""
        fed = make_test_federation(clock=CLOCK)
        signed = _dgws.sign(card(creds), creds)
        answer = issue_card(fed, _dgws.request_security_token(signed, now=NOW), clock=CLOCK,
                            indent=True, namespaces_on_envelope=True)
        start = answer.index(b"<saml:Assertion")
        end = answer.index(b"</saml:Assertion>") + len(b"</saml:Assertion>")
        original = answer[start:end]
        tricky = (answer[:start] + b"<!-- <saml:Assertion> </saml:Assertion> -->"
                  + original.replace(b"</ds:SignatureValue>", b"&#13;</ds:SignatureValue>")
                  + answer[end:])
        issued = _dgws.parse_security_token_response(tricky)
        assert issued.assertion == original.replace(b"</ds:SignatureValue>",
                                                    b"&#13;</ds:SignatureValue>")
        assert ("saml", _dgws.NS["saml"]) in issued.namespaces
        issued = _dgws.parse_security_token_response(answer)
        assert issued.assertion == original
        _dgws.verify(issued.element(), trusted=[fed.certificate])
        header = _dgws.security_header(issued, now=NOW)
        assert original in header

    @pytest.mark.parametrize("encoding", ["ISO-8859-1", "UTF-16"])
    def test_an_answer_in_another_encoding_keeps_its_characters(
            self, creds: _dgws.SystemCredentials, encoding: str) -> None:
        """An STS answer in another encoding gives the same card, character for character
        in UTF-8, and its signature holds."""
        fed = make_test_federation(clock=CLOCK)
        c = _dgws.build_id_card(creds, cvr="12345678", system_name="Cura",
                                care_provider_name="Ærø Kommune", now=NOW)
        signed = _dgws.sign(c, creds)
        answer = issue_card(fed, _dgws.request_security_token(signed, now=NOW), clock=CLOCK,
                            indent=True)
        start = answer.index(b"<saml:Assertion")
        end = answer.index(b"</saml:Assertion>") + len(b"</saml:Assertion>")
        text = answer.decode().replace("encoding='UTF-8'", f"encoding='{encoding}'")
        issued = _dgws.parse_security_token_response(text.encode(encoding))
        assert issued.assertion == answer[start:end]
        assert "Ærø Kommune".encode() in issued.assertion
        _dgws.verify(issued.element(), trusted=[fed.certificate])

    def test_our_prefixes_give_way_to_the_cards(self) -> None:
        """If the card's answer binds wsse to something else, the header uses another
        prefix for wsse:Security, and the card keeps its own meaning."""
        issued = _dgws.IdCard(b'<wsse:x xmlns:wsse="urn:other"/>', NOW,
                              (("wsse", "urn:other"),))
        header = etree.fromstring(b"<h>" + _dgws.security_header(issued, now=NOW) + b"</h>")
        assert header[0].tag == f"{{{_dgws.NS['wsse']}}}Security"
        assert header[0][1].tag == "{urn:other}x"

    def test_unsigned_or_tampered_request_is_refused(self,
                                                     creds: _dgws.SystemCredentials) -> None:
        """The STS refuses a card that does not verify."""
        fed = make_test_federation(clock=CLOCK)
        with pytest.raises(_dgws.CardRejected):
            issue_card(fed, _dgws.request_security_token(card(creds), now=NOW), clock=CLOCK)

    def test_fault_answer_is_card_rejected(self) -> None:
        """An STS fault becomes CardRejected with its text."""
        from minlog.minlog2 import wire as _wire
        with pytest.raises(_dgws.CardRejected, match="expired"):
            _dgws.parse_security_token_response(_wire.encode_fault("wst:Fail", "expired"))


class TestCache:
    def test_reuses_until_margin_then_renews(self) -> None:
        """A card is reused until shortly before it expires, then fetched again."""
        made: list[_dgws.IdCard] = []

        def fetch() -> _dgws.IdCard:
            made.append(_dgws.IdCard(b"<x/>", NOW + dt.timedelta(hours=1)))
            return made[-1]

        clock = FixedClock(NOW)
        cache = _dgws.CardCache(margin=dt.timedelta(minutes=5), clock=clock)
        first = cache.get(fetch)
        clock.advance(54 * 60)
        assert cache.get(fetch) is first
        clock.advance(2 * 60)
        assert cache.get(fetch) is not first
        cache.invalidate()
        cache.get(fetch)
        assert len(made) == 3


WST = "{http://schemas.xmlsoap.org/ws/2005/02/trust}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"


def sts_request_of(system_name: str = "Cura", **options: object) -> bytes:
    """The STS request the transport sends when it needs a card (FakeNSP at a fixed date)."""
    from strategies import registration

    from minlog.minlog2 import Minlog2Transport

    p12 = make_test_certificate("12345678", "Testkommune", clock=CLOCK)
    with FakeNSP(cvr="12345678", clock=CLOCK) as nsp:
        t = Minlog2Transport(service_url=nsp.service_url, sts_url=nsp.sts_url, credentials=p12,
                             cvr="12345678", system_name=system_name,
                             care_provider_name="Testkommune", clock=CLOCK,
                             **options)  # type: ignore[arg-type]
        try:
            t.send([registration()])
        finally:
            t.close()
        assert len(nsp.received) == 1
        return nsp.sts_requests[0]


def signature_methods(c: etree._Element) -> tuple[str | None, str | None]:
    method = c.find(f"{DS}Signature/{DS}SignedInfo/{DS}SignatureMethod")
    digest = c.find(f"{DS}Signature/{DS}SignedInfo/{DS}Reference/{DS}DigestMethod")
    assert method is not None
    assert digest is not None
    return method.get("Algorithm"), digest.get("Algorithm")


class TestDigest:
    def test_sha256_is_the_default_card(self, creds: _dgws.SystemCredentials) -> None:
        """By default the card carries the SHA-256 hash of the certificate (32 bytes) and
        is signed with RSA-SHA256 over SHA-256 digests, as the authority's client does."""
        import base64
        import hashlib

        c = _dgws.sign(card(creds), creds)
        der = creds.certificate.public_bytes(serialization.Encoding.DER)
        cert_hash = base64.b64decode(attributes(c)["sosi:OCESCertHash"] or "")
        assert cert_hash == hashlib.sha256(der).digest()
        assert signature_methods(c) == ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                                        "http://www.w3.org/2001/04/xmlenc#sha256")

    def test_the_transport_asks_the_sts_with_a_sha256_card(self) -> None:
        """The card the transport sends to the STS is a SHA-256 card end to end."""
        import base64

        c = _dgws.card_from_request(sts_request_of())
        assert len(base64.b64decode(attributes(c)["sosi:OCESCertHash"] or "")) == 32
        assert signature_methods(c)[0] == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"

    def test_sha1_stays_an_option_for_older_stss(self) -> None:
        """digest="sha1" sends a SHA-1 card (20-byte hash, RSA-SHA1), which the STS takes."""
        import base64

        c = _dgws.card_from_request(sts_request_of(digest="sha1"))
        assert len(base64.b64decode(attributes(c)["sosi:OCESCertHash"] or "")) == 20
        assert signature_methods(c) == ("http://www.w3.org/2000/09/xmldsig#rsa-sha1",
                                        "http://www.w3.org/2000/09/xmldsig#sha1")


class TestStsRequest:
    def test_request_type_is_the_ws_trust_2005_02_issue(self) -> None:
        """RequestType is http://schemas.xmlsoap.org/ws/2005/02/trust/Issue, as in the
        Seal samples and the authority's client."""
        root = etree.fromstring(sts_request_of())
        rst = root.find(f"{SOAP}Body/{WST}RequestSecurityToken")
        assert rst is not None
        assert rst.get("Context") == "www.sosi.dk"
        assert rst.findtext(f"{WST}RequestType") == (
            "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue")
        assert rst.findtext(f"{WST}TokenType") == "urn:oasis:names:tc:SAML:2.0:assertion:"

    def test_issuer_is_an_ncname_when_the_system_name_has_spaces(self) -> None:
        """saml:Issuer is an xs:NCName (official saml.xsd) whatever the system is called;
        the name itself travels in medcom:ITSystemName."""
        import re

        c = _dgws.card_from_request(sts_request_of(system_name="Cura Nexus"))
        issuer = c.findtext(f"{SAML}Issuer") or ""
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9._-]*", issuer), issuer
        assert attributes(c)["medcom:ITSystemName"] == "Cura Nexus"

    def test_only_the_security_header(self) -> None:
        """The STS request's SOAP header holds wsse:Security with a timestamp, nothing else
        (no WS-Addressing headers: neither Seal's samples nor the authority's client send
        them for a system card)."""
        root = etree.fromstring(sts_request_of())
        header = root.find(f"{SOAP}Header")
        assert header is not None
        assert [etree.QName(h).localname for h in header] == ["Security"]
