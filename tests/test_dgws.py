"""DGWS system ID card: content, signature (ours and xmlsec1's verdict), STS, cache."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from minlog import ConfigurationError
from minlog.minlog2 import idcard as _dgws
from minlog.testing import (
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
        """The card names the CVR, is a level-3 system card, and hashes the certificate."""
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
        assert a["sosi:OCESCertHash"] == base64.b64encode(hashlib.sha1(der).digest()).decode()  # noqa: S324
        nb, na, cvr = _dgws.card_facts(c)
        assert (nb, na - nb, cvr) == (NOW, dt.timedelta(hours=24), "12345678")

    def test_bad_cvr_is_refused(self, creds: _dgws.SystemCredentials) -> None:
        """A CVR must be 8 digits."""
        with pytest.raises(ConfigurationError):
            _dgws.build_id_card(creds, cvr="1234", system_name="x", care_provider_name="y",
                                now=NOW)

    def test_wrong_pkcs12_password(self) -> None:
        """A wrong password is a ConfigurationError that does not echo the password."""
        data, _ = make_test_certificate("12345678", "Testkommune", clock=CLOCK)
        with pytest.raises(ConfigurationError) as e:
            _dgws.load_pkcs12(data, b"hunter2-wrong")
        assert "hunter2" not in str(e.value)


class TestSignature:
    @pytest.mark.parametrize("algorithm", ["rsa-sha1", "rsa-sha256"])
    def test_sign_then_verify(self, creds: _dgws.SystemCredentials, algorithm: str) -> None:
        """A signed card verifies and names its signer."""
        c = _dgws.sign(card(creds), creds, algorithm=algorithm)
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

    @pytest.mark.parametrize("algorithm", ["rsa-sha1", "rsa-sha256"])
    def test_xmlsec1_verifies_our_signature(self, creds: _dgws.SystemCredentials,
                                            algorithm: str, tmp_path: Path) -> None:
        """An independent XML-DSig implementation (xmlsec1) accepts our signature."""
        if shutil.which("xmlsec1") is None:
            if os.environ.get("MINLOG_REQUIRE_XMLSEC") == "1":
                pytest.fail("xmlsec1 is required here (apt-get install xmlsec1)")
            pytest.skip("xmlsec1 is not installed (apt-get install xmlsec1)")
        c = _dgws.sign(card(creds), creds, algorithm=algorithm)
        (tmp_path / "card.xml").write_bytes(etree.tostring(c, xml_declaration=True,
                                                           encoding="UTF-8"))
        (tmp_path / "cert.pem").write_bytes(
            creds.certificate.public_bytes(serialization.Encoding.PEM))
        cmd = ["xmlsec1", "--verify", "--pubkey-cert-pem", str(tmp_path / "cert.pem"),
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
        header = _dgws.security_header(issued, now=NOW)
        assert [etree.QName(h).localname for h in header] == ["Security", "Header"]

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
