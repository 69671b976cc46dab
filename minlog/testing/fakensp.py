"""`FakeNSP`: a strict reference receiver for MinLog2 on loopback, with fault injection.

It plays both NSP parts the library talks to:

* the **SOSI STS** (``POST /sts``): verifies the client's signed system ID card and
  answers with a new card signed by its own test federation key;
* the **RegisterService** (``POST /minlog2-registration/<version>/RegisterService``):
  checks the SOAPAction, the ID card in ``wsse:Security`` (federation signature,
  validity, CVR) and the ``medcom:Header``, validates the request strictly against the
  schema, and answers ``NumberAdded``, ``NumberFailed`` and per-entry failures.

It records ``received`` (registrations accepted, in order), ``batches`` (each accepted
request's registrations with the CVR its ID card named), ``requests``,
``sts_requests`` and ``sts_answers`` (raw bodies) and ``headers`` and ``sts_headers`` (the
HTTP headers of each call), and
can be told to misbehave: latency, HTTP 5xx, 429 with Retry-After, a timeout, a dropped
connection, a SOAP Fault, refusing chosen entries, expiring every card, or refusing the
cards of one CVR (`FakeNSP.refuse_cards`).

It behaves like the real service where that is known; each behaviour is a switch, for
vendors' own tests (defaults in brackets):

``official_schemas`` [None]
    The folder of the authority's official schemas (`minlog.minlog2.official`): every
    request body is then validated against the official XSD of ``version`` and the
    ``medcom:Header`` and ``wsse:Security`` headers against ``medcom.xsd`` and
    ``wsse.xsd`` (SHA-256 signatures tolerated, as the authority's client sends them).
    Without it, ``minlog``'s own XSDs are used.
``dgws_faults`` [True]
    Card and header problems are answered as DGWS services do: HTTP 500, faultcode
    ``Server``, ``medcom:FaultCode`` in the detail (``expired_idcard``,
    ``invalid_idcard``, ``invalid_signature``, ``not_authorized``,
    ``security_level_failed``, ``missing_required_header``, ``invalid_header``). False:
    a plain ``wsse:InvalidSecurityToken`` fault without a DGWS code.
``sts_indent``, ``sts_prefixes``, ``sts_namespaces_on_envelope`` [False, None, False]
    How the STS writes its answer: pretty-printed (the card is signed indented), with
    other prefixes for the card's namespaces (``{"saml": "saml2", "ds": "dsig"}``), or
    with the card's namespaces declared on the envelope. A client must forward the card
    byte for byte whatever the layout.
``sts_digest``, ``accept_digests`` [``"sha256"``, both]
    The digest the STS signs its cards with, and the client card digests it accepts.
``failure_detail`` [``"named"``]
    How refused entries are reported: ``"named"`` (with ``SequenceNumber``),
    ``"unnamed"`` (``FailedLogDataEntries`` without ``SequenceNumber``, which the schema
    allows) or ``"count-only"`` (only ``NumberFailed``).
``soap_actions`` [``AddRegistrations`` and ``AddRegistrations_<version>``]
    The SOAPAction values accepted (a decoupling component routes on it); others are
    refused with a client fault. None accepts anything.
``ssl_context`` [None]
    Serve HTTPS with this server context (e.g. one that requires a client certificate
    chain, as NSP may).
``cvrs`` [None]
    Several care providers (an installation of several municipalities): the CVRs whose
    ID cards the service accepts, besides ``cvr``.
``units`` [None]
    CVR -> the organisation ids its entries may name: a request whose ID card names one
    CVR and whose entries name an organisation not listed for it is refused (a client
    fault, ``not_authorized``), as when a batch is sent with another tenant's card.

Use it as a context manager; it listens on 127.0.0.1 on an ephemeral port.
"""

from __future__ import annotations

import datetime as _dt
import http.server
import os
import ssl
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Literal

import attrs
from lxml import etree

from minlog.core.clock import SYSTEM_CLOCK, Clock, utc_now
from minlog.errors import MinlogError, ValidationError
from minlog.minlog2 import EntryFailure
from minlog.minlog2 import idcard as _dgws
from minlog.minlog2 import wire as _wire
from minlog.minlog2.official import OfficialSchemas
from minlog.minlog2.registration import Registration
from minlog.testing.certs import TestFederation, issue_card, make_test_federation

__all__ = ["FailureDetail", "FakeNSP", "Fault", "ReceivedBatch"]

FaultKind = Literal["http500", "http503", "http429", "timeout", "drop", "soap-fault", "latency"]
FailureDetail = Literal["named", "unnamed", "count-only"]


@attrs.frozen
class Fault:
    """One injected misbehaviour, used for the next ``times`` service calls."""

    kind: FaultKind
    times: int = 1
    seconds: float = 0.0  # latency / timeout length / Retry-After
    code: str = "soap:Client"
    text: str = "injected fault"
    dgws_code: str | None = None  # for "soap-fault": a medcom:FaultCode in the detail


@attrs.frozen
class ReceivedBatch:
    """One request the service accepted: the CVR its ID card named and the
    registrations it took."""

    cvr: str
    registrations: tuple[Registration, ...]


class _Refusal(Exception):
    """The service refuses the request: a SOAP fault, with a DGWS code or not."""

    def __init__(self, dgws_code: str, text: str, *, client: bool = False) -> None:
        super().__init__(text)
        self.dgws_code = dgws_code
        self.text = text
        self.client = client


class FakeNSP:
    """A MinLog2 RegisterService and SOSI STS on loopback (see the module docstring).

    ``cvr``: the CVR the ID cards must name (None accepts any; ``cvrs``: several).
    ``version``: the schema
    version the service validates against. ``card_validity``: lifetime of issued cards.
    ``reject``: a callable returning a fault code for a registration to refuse, or None.
    ``refuse_request``: a callable returning ``(faultcode, text)`` to refuse a whole
    (schema-valid) request as a client fault, e.g. when it holds a certain entry.
    ``clock``: the time the STS and the service judge cards by. The other switches are
    described in the module docstring.
    """

    def __init__(
        self,
        *,
        cvr: str | None = None,
        version: str = _wire.DEFAULT_VERSION,
        card_validity: _dt.timedelta = _dt.timedelta(hours=8),
        federation: TestFederation | None = None,
        reject: Callable[[Registration], str | None] | None = None,
        refuse_request: Callable[[list[Registration]], tuple[str, str] | None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        official_schemas: str | os.PathLike[str] | OfficialSchemas | None = None,
        dgws_faults: bool = True,
        sts_indent: bool = False,
        sts_prefixes: Mapping[str, str] | None = None,
        sts_namespaces_on_envelope: bool = False,
        sts_digest: str = _dgws.DEFAULT_DIGEST,
        accept_digests: Sequence[str] = tuple(_dgws.DIGESTS),
        failure_detail: FailureDetail = "named",
        soap_actions: Sequence[str] | None = ("AddRegistrations", "AddRegistrations_{version}"),
        ssl_context: ssl.SSLContext | None = None,
        cvrs: Collection[str] | None = None,
        units: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        if failure_detail not in ("named", "unnamed", "count-only"):
            raise ValueError("failure_detail: 'named', 'unnamed' or 'count-only'")
        self.cvr = cvr
        self.cvrs = frozenset(cvrs or ())
        self.units = None if units is None else {c: frozenset(u) for c, u in units.items()}
        self.version = version
        self.card_validity = card_validity
        self.clock = clock
        self.federation = federation or make_test_federation(clock=clock)
        self.reject = reject
        self.refuse_request = refuse_request
        self.official = (OfficialSchemas(official_schemas)
                         if official_schemas is not None
                         and not isinstance(official_schemas, OfficialSchemas)
                         else official_schemas)
        self.dgws_faults = dgws_faults
        self.sts_indent = sts_indent
        self.sts_prefixes = dict(sts_prefixes or {})
        self.sts_namespaces_on_envelope = sts_namespaces_on_envelope
        self.sts_digest = _dgws.check_digest(sts_digest)
        self.accept_digests = tuple(_dgws.check_digest(d) for d in accept_digests)
        self.failure_detail = failure_detail
        self.soap_actions = (None if soap_actions is None
                             else frozenset(a.format(version=version) for a in soap_actions))
        self.ssl_context = ssl_context
        self.received: list[Registration] = []
        self.batches: list[ReceivedBatch] = []
        self.requests: list[bytes] = []
        self.sts_requests: list[bytes] = []
        self.sts_answers: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.sts_headers: list[dict[str, str]] = []
        self.cards_issued = 0
        self.cards_refused = 0
        self.calls = 0
        self._faults: list[Fault] = []
        self._issued: set[str] = set()
        self._expired: set[str] = set()
        self._refused_cvrs: set[str] = set()
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeNSP:
        handler = _make_handler(self)
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        if self.ssl_context is not None:
            self._server.socket = self.ssl_context.wrap_socket(self._server.socket,
                                                               server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="fake-nsp", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeNSP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeNSP is not started")
        host, port = self._server.server_address[:2]
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host!s}:{port}"

    @property
    def sts_url(self) -> str:
        return f"{self.base_url}/sts"

    @property
    def service_url(self) -> str:
        return f"{self.base_url}/minlog2-registration/{self.version}/RegisterService"

    # ------------------------------------------------------------------ faults

    def inject(self, fault: Fault) -> None:
        """Misbehave on the next ``fault.times`` service calls (in order of injection)."""
        with self._lock:
            self._faults.append(fault)

    def expire_cards(self) -> None:
        """Refuse every card issued so far, as if they had expired."""
        with self._lock:
            self._expired |= self._issued

    def refuse_cards(self, cvr: str, refuse: bool = True) -> None:
        """Refuse (or, with ``refuse=False``, accept again) the ID cards of ``cvr``: the STS
        issues it none and the service refuses the cards it holds (``invalid_idcard``),
        as for a care provider whose certificate was revoked. Other CVRs are served."""
        with self._lock:
            if refuse:
                self._refused_cvrs.add(cvr)
            else:
                self._refused_cvrs.discard(cvr)

    def received_for(self, cvr: str) -> list[Registration]:
        """The registrations accepted in requests whose ID card named ``cvr``."""
        with self._lock:
            return [r for b in self.batches if b.cvr == cvr for r in b.registrations]

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.times <= 1:
                self._faults.pop(0)
            else:
                self._faults[0] = attrs.evolve(fault, times=fault.times - 1)
            return fault

    # ------------------------------------------------------------------ handlers

    def handle_sts(self, body: bytes, headers: Mapping[str, str] | None = None
                   ) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self.sts_requests.append(body)
            self.sts_headers.append(dict(headers or {}))
            refused = set(self._refused_cvrs)
        try:
            if refused and _dgws.card_facts(_dgws.card_from_request(body))[2] in refused:
                raise _dgws.CardRejected("this care provider's cards are refused")
            answer = issue_card(
                self.federation, body, clock=self.clock, validity=self.card_validity,
                digest=self.sts_digest, accept_digests=self.accept_digests,
                indent=self.sts_indent, prefixes=self.sts_prefixes,
                namespaces_on_envelope=self.sts_namespaces_on_envelope)
        except MinlogError as e:
            with self._lock:
                self.cards_refused += 1
            return 500, _wire.encode_fault("soapenv:Client", f"wst:FailedAuthentication: {e}"), {}
        card_id = _card_id(_sts_card(answer))
        with self._lock:
            self.cards_issued += 1
            self._issued.add(card_id)
            self.sts_answers.append(answer)
        return 200, answer, {}

    def handle_service(self, body: bytes, headers: Mapping[str, str] | None = None
                       ) -> tuple[int, bytes, dict[str, str]]:
        headers = dict(headers or {})
        action = headers.get("SOAPAction", headers.get("soapaction", "")).strip('"')
        if self.soap_actions is not None and action not in self.soap_actions:
            return 500, _wire.encode_fault(
                "soapenv:Client", f"no operation for SOAPAction {action!r}"), {}
        try:
            card_cvr = self._check_headers(body)
        except _Refusal as e:
            if not self.dgws_faults:
                return 500, _wire.encode_fault("wsse:InvalidSecurityToken", e.text), {}
            return 500, _wire.encode_fault("soapenv:Client" if e.client else "soapenv:Server",
                                           e.text, dgws_code=e.dgws_code), {}
        try:
            registrations = _wire.validate_request(body, version=self.version)
            if self.official is not None:
                errors = self.official.check_registration(
                    _request_payload(body), self.version)
                if errors:
                    raise ValidationError("RegistrationRequest",
                                                f"official schema {self.version}: {errors[0]}")
        except MinlogError as e:
            return 500, _wire.encode_fault("soapenv:Client", f"schema: {e}"), {}
        if self.refuse_request is not None:
            refusal = self.refuse_request(registrations)
            if refusal is not None:
                return 500, _wire.encode_fault(*refusal), {}
        if self.units is not None:
            own = self.units.get(card_cvr, frozenset())
            if any(r.organisation_id not in own for r in registrations):
                return 500, _wire.encode_fault(
                    "soapenv:Client", "an entry names an organisation of another care "
                    "provider than the ID card's", dgws_code="not_authorized"), {}
        failures: list[EntryFailure] = []
        accepted: list[Registration] = []
        for r in registrations:
            code = self.reject(r) if self.reject is not None else None
            if code is None:
                accepted.append(r)
            else:
                named = self.failure_detail == "named"
                failures.append(EntryFailure((r.sequence_number or "") if named else "", code,
                                             "refused"))
        with self._lock:
            self.received.extend(accepted)
            self.batches.append(ReceivedBatch(card_cvr, tuple(accepted)))
        return 200, _wire.encode_response(
            len(accepted), failures, version=self.version,
            list_failures=self.failure_detail != "count-only"), {}

    def _check_headers(self, body: bytes) -> str:
        """The DGWS checks of a service call: the CVR the ID card names, or `_Refusal`
        with the DGWS code."""
        try:
            root = _wire.parse_xml(body, what="request", exact=True)
        except MinlogError as e:
            raise _Refusal("invalid_input", str(e), client=True) from None
        header = root.find(f"{{{_wire.SOAP_NS}}}Header")
        security = header.find(f"{{{_dgws.NS['wsse']}}}Security") if header is not None else None
        medcom = header.find(f"{{{_wire.MEDCOM_NS}}}Header") if header is not None else None
        if security is None or medcom is None:
            raise _Refusal("missing_required_header", "wsse:Security and medcom:Header needed")
        if self.official is not None:
            if errors := self.official.check_medcom_header(medcom):
                raise _Refusal("invalid_header", f"medcom:Header: {errors[0]}")
            if errors := self.official.check_security(security):
                raise _Refusal("invalid_idcard", f"wsse:Security: {errors[0]}")
        if medcom.findtext(f"{{{_wire.MEDCOM_NS}}}SecurityLevel") != "3":
            raise _Refusal("security_level_failed", "SecurityLevel must be 3")
        card = security.find(f"{{{_dgws.NS['saml']}}}Assertion")
        if card is None:
            raise _Refusal("invalid_idcard", "the request carries no ID card")
        try:
            _dgws.verify(card, trusted=[self.federation.certificate])
        except _dgws.CardRejected as e:
            raise _Refusal("invalid_signature", f"the ID card's signature: {e}") from None
        try:
            not_before, not_after, cvr = _dgws.card_facts(card)
        except _dgws.CardRejected as e:
            raise _Refusal("invalid_idcard", str(e)) from None
        if _attribute(card, "sosi:AuthenticationLevel") != "3":
            raise _Refusal("security_level_failed", "the ID card is not of level 3")
        now = utc_now(self.clock)
        with self._lock:
            expired = _card_id(card) in self._expired
        if expired or not not_before <= now < not_after:
            raise _Refusal("expired_idcard", "the ID card has expired or is not valid yet")
        with self._lock:
            refused = cvr in self._refused_cvrs
        if refused:
            raise _Refusal("invalid_idcard", "this care provider's ID cards are refused")
        accepted = self.cvrs | ({self.cvr} if self.cvr is not None else set())
        if accepted and cvr not in accepted:
            raise _Refusal("not_authorized", "the ID card names another organisation")
        return cvr


def _attribute(card: Any, name: str) -> str | None:
    for a in card.iter(f"{{{_dgws.NS['saml']}}}Attribute"):
        if a.get("Name") == name:
            return str(a.findtext(f"{{{_dgws.NS['saml']}}}AttributeValue") or "")
    return None


def _card_id(card: Any) -> str:
    return _attribute(card, "sosi:IDCardID") or ""


def _sts_card(answer: bytes) -> etree._Element:
    root = _wire.parse_xml(answer, what="STS answer", exact=True)
    card = root.find(f".//{{{_dgws.NS['wst']}}}RequestedSecurityToken/"
                     f"{{{_dgws.NS['saml']}}}Assertion")
    if card is None:
        raise _dgws.CardRejected("the STS answer holds no ID card")
    return card


def _request_payload(body: bytes) -> etree._Element:
    root = _wire.parse_xml(body, what="request", exact=True)
    payload = root.find(f"{{{_wire.SOAP_NS}}}Body/*")
    if payload is None:
        raise ValidationError("Body", "is empty")
    return payload


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections dropped on purpose (fault injection) or by clients are not errors."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError | ssl.SSLError):
            super().handle_error(request, client_address)


def _make_handler(fake: FakeNSP) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between header and body

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {k: v for k, v in self.headers.items()}
            if self.path == "/sts":
                self._answer(*fake.handle_sts(body, headers))
                return
            if not self.path.endswith("/RegisterService"):
                self._answer(404, b"not found", {})
                return
            with fake._lock:  # every call counts, misbehaved or not
                fake.calls += 1
                fake.requests.append(body)
                fake.headers.append(headers)
            fault = fake._next_fault()
            if fault is not None and self._misbehave(fault):
                return
            try:
                answer = fake.handle_service(body, headers)
            except Exception as e:  # a receiver bug must still answer, as a server fault
                answer = (500, _wire.encode_fault("soapenv:Server",
                                                  f"{type(e).__name__}: {e}"), {})
            self._answer(*answer)

        def _misbehave(self, fault: Fault) -> bool:
            """Act out ``fault``; True when the request is finished."""
            if fault.kind == "latency":
                time.sleep(fault.seconds)
                return False
            if fault.kind == "timeout":
                time.sleep(fault.seconds)
                self.close_connection = True
                return True
            if fault.kind == "drop":
                self.close_connection = True
                self.connection.close()
                return True
            if fault.kind == "http429":
                self._answer(429, b"slow down", {"Retry-After": f"{fault.seconds:g}"})
                return True
            if fault.kind in ("http500", "http503"):
                self._answer(int(fault.kind[4:]), b"server error", {})
                return True
            if fault.kind == "soap-fault":
                status = 500
                self._answer(status, _wire.encode_fault(fault.code, fault.text,
                                                        dgws_code=fault.dgws_code), {})
                return True
            return False

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/xml;charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

    return Handler
