"""The MinLog2 wire format: encoding, schema validity, decoding, faults."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from strategies import AT, registration, registrations

from minlog import (
    EntryFailure,
    PermanentDeliveryError,
    Registration,
    TransientDeliveryError,
    ValidationError,
)
from minlog.minlog2 import wire as _wire

reg = registration


class TestEncode:
    def test_root_qualified_children_unqualified(self) -> None:
        """Only RegistrationRequest is in the namespace; children are in none."""
        root = _wire.encode_request([reg()])
        assert etree.QName(root).namespace == _wire.NAMESPACES["20250312"]
        assert all(etree.QName(e).namespace is None for e in root.iter() if e is not root)

    def test_elements_in_schema_order(self) -> None:
        """Destination children follow the contract's order."""
        r = reg(reason="r", on_behalf_of_person_identifier="0303303456",
                on_behalf_of_person_identifier_source="CPR", user_role="Læge",
                filters=("Ikke borger",), correlation_id="c")
        dest = _wire.encode_request([r]).find("LogDataEntry/Destination")
        assert dest is not None
        assert [e.tag for e in dest] == [
            "SystemName", "Activity", "Reason", "DateTime", "OrganisationId",
            "PersonIdentifier", "CorrelationId", "SequenceNumber", "UserPersonIdentifier",
            "UserPersonName", "UserRole", "OnBehalfOfPersonIdentifier", "Filter"]
        assert dest.findtext("DateTime") == "2026-11-24T08:00:00.123456Z"
        assert dest.find("PersonIdentifier").get("source") == "CPR"  # type: ignore[union-attr]

    @pytest.mark.parametrize("version", ["20250312", "20230425"])
    def test_encoded_requests_validate_against_our_xsd(self, version: str) -> None:
        """What we encode validates against the schema of the chosen version."""
        body = _wire.encode_envelope([reg(), reg(from_date_time=AT, to_date_time=AT,
                                                 date_time=None)], version=version)
        _wire.validate_request(body, version=version)

    def test_version_rules_are_checked_before_sending(self) -> None:
        """A source the version does not allow is refused naming the field."""
        with pytest.raises(ValidationError) as e:
            _wire.encode_envelope([reg(organisation_id_source="SKS")])
        assert e.value.field == "organisation_id_source"
        _wire.encode_envelope([reg(organisation_id_source="SKS")], version="20230425")

    def test_empty_batch_is_refused(self) -> None:
        """A request needs at least one entry."""
        with pytest.raises(ValidationError):
            _wire.encode_envelope([])

    def test_schema_refuses_tampered_limits(self) -> None:
        """A body breaking a limit fails validation naming the element."""
        body = _wire.encode_envelope([reg()]).replace(b"<SystemName>Cura<",
                                                      b"<SystemName>" + b"C" * 30 + b"<")
        with pytest.raises(ValidationError) as e:
            _wire.validate_request(body)
        assert "SystemName" in str(e.value)


    @pytest.mark.parametrize("version", ["20250312", "20230425"])
    @pytest.mark.parametrize(("element", "limit"), [("SystemName", 25), ("CorrelationId", 46)])
    def test_our_xsd_holds_the_source_limits(self, version: str, element: str,
                                             limit: int) -> None:
        """Source/SystemName and Source/CorrelationId are limited to 25 and 46 characters."""
        body = _wire.encode_envelope([reg(source_system_name="s", source_correlation_id="c")],
                                     version=version)
        old = {"SystemName": b"<Source><CorrelationId>c</CorrelationId><SystemName>s<",
               "CorrelationId": b"<Source><CorrelationId>c<"}[element]
        for n, valid in ((limit, True), (limit + 1, False)):
            text = old.replace(b">s<" if element == "SystemName" else b">c<",
                               b">" + b"x" * n + b"<")
            tampered = body.replace(old, text)
            assert tampered != body
            if valid:
                _wire.validate_request(tampered, version=version)
            else:
                with pytest.raises(ValidationError, match=element):
                    _wire.validate_request(tampered, version=version)


class TestRoundTrip:
    @settings(max_examples=60, deadline=None)
    @given(st.lists(registrations(), min_size=1, max_size=4))
    def test_decode_inverts_encode(self, rs: list[Registration]) -> None:
        """decode(encode(rs)) == rs, for any text the schema allows."""
        body = _wire.encode_envelope(rs)
        _wire.validate_request(body)
        assert _wire.decode_request(body) == rs


    def test_carriage_returns_and_attribute_white_space_survive(self) -> None:
        """A carriage return is sent as a reference (a parser would turn it into a line
        feed), so the receiver reads exactly the text given."""
        r = reg(activity="Opslag\r\nmedicin", reason="a\rb", organisation_id_source="Yder")
        body = _wire.encode_envelope([r], version="20230425")
        assert b"&#13;" in body
        assert _wire.decode_request(body, version="20230425") == [r]


class TestResponses:
    def test_response_round_trip(self) -> None:
        """Failures come back by SequenceNumber with code and text."""
        body = _wire.encode_response(2, [EntryFailure("s1", "E1", "bad")])
        result = _wire.decode_response(body)
        assert result.failed == (EntryFailure("s1", "E1", "bad"),)
        assert result.number_added == 2

    def test_client_fault_is_permanent(self) -> None:
        """A soap:Client fault will not succeed if sent again."""
        with pytest.raises(PermanentDeliveryError) as e:
            _wire.decode_response(_wire.encode_fault("soap:Client", "malformed"), 500)
        assert e.value.code == "soap:Client"

    @pytest.mark.parametrize(("body", "status"), [
        (_wire.encode_fault("soap:Server", "busy"), 500),
        (b"<html>Bad gateway</html>", 502),
        (b"", 503),
        (b"not xml", 200),
        (_wire.encode_fault("soap:Client", "slow down"), 429),
    ])
    def test_server_trouble_is_transient(self, body: bytes, status: int) -> None:
        """Server faults, 5xx, 429 and unreadable answers are retried."""
        with pytest.raises(TransientDeliveryError):
            _wire.decode_response(body, status)

    def test_plain_4xx_is_permanent(self) -> None:
        """HTTP 400 without a fault is a refusal of the request."""
        with pytest.raises(PermanentDeliveryError):
            _wire.decode_response(b"bad request", 400)


class TestHostileInput:
    @pytest.mark.parametrize("body", [
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<r>&b;&b;</r>",
    ])
    def test_entities_and_doctypes_are_refused(self, body: bytes) -> None:
        """XXE and entity expansion never reach our code."""
        with pytest.raises(ValidationError):
            _wire.decode_request(body)


class TestDgwsFaults:
    @pytest.mark.parametrize("code", sorted(_wire.DGWS_FAULT_CODES - {"invalid_input"}))
    def test_dgws_codes_are_read_from_the_detail(self, code: str) -> None:
        """A DGWS fault (faultcode Server, medcom:FaultCode in the detail) is transient and
        carries its DGWS code, whatever the fault string says."""
        body = _wire.encode_fault("soapenv:Server", "Der opstod en fejl", dgws_code=code)
        with pytest.raises(TransientDeliveryError) as e:
            _wire.decode_response(body, 500)
        assert e.value.code == f"dgws:{code}"

    def test_invalid_input_is_a_refusal_of_the_request(self) -> None:
        """invalid_input is about the request's content: permanent (the batch is split)."""
        body = _wire.encode_fault("soapenv:Client", "bad", dgws_code="invalid_input")
        with pytest.raises(PermanentDeliveryError) as e:
            _wire.decode_response(body, 500)
        assert e.value.code == "dgws:invalid_input"


class TestUnattributedFailures:
    def test_a_failure_without_sequence_number_is_unattributed(self) -> None:
        """FailedLogDataEntries/SequenceNumber is optional: such a failure names no entry."""
        body = _wire.encode_response(3, [EntryFailure("", "E1", "bad"),
                                         EntryFailure("s2", "E2", "bad")])
        result = _wire.decode_response(body)
        assert result.unattributed == 1
        assert result.number_failed == 2

    def test_number_failed_beyond_the_failures_listed_is_unattributed(self) -> None:
        """NumberFailed larger than the failures listed: the rest are unattributed."""
        body = _wire.encode_response(3, [EntryFailure("s2", "E2", "bad")], number_failed=3)
        assert _wire.decode_response(body).unattributed == 2
        body = _wire.encode_response(3, [EntryFailure("s2", "E2", "bad")], list_failures=False)
        assert _wire.decode_response(body).unattributed == 1
        assert _wire.decode_response(_wire.encode_response(3, [])).unattributed == 0
