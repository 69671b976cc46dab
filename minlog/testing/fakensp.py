"""`FakeNSP`: a strict reference receiver for MinLog2 on loopback, with fault injection.

It plays both NSP parts the library talks to:

* the **SOSI STS** (``POST /sts``): verifies the client's signed system ID card and
  answers with a new card signed by its own test federation key;
* the **RegisterService** (``POST /minlog2-registration/<version>/RegisterService``):
  checks the ID card in ``wsse:Security`` (federation signature, validity, CVR),
  validates the request strictly against the schema, and answers ``NumberAdded``,
  ``NumberFailed`` and per-entry failures.

It records ``received`` (registrations accepted, in order) and ``requests`` (raw bodies),
and can be told to misbehave: latency, HTTP 5xx, 429 with Retry-After, a timeout, a
dropped connection, a SOAP Fault, refusing chosen entries, or expiring every card.

Use it as a context manager; it listens on 127.0.0.1 on an ephemeral port.
"""

from __future__ import annotations

import datetime as _dt
import http.server
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import attrs

from minlog.core.clock import SYSTEM_CLOCK, Clock, utc_now
from minlog.errors import MinlogError
from minlog.minlog2 import EntryFailure
from minlog.minlog2 import idcard as _dgws
from minlog.minlog2 import wire as _wire
from minlog.minlog2.registration import Registration
from minlog.testing.certs import TestFederation, make_test_federation

__all__ = ["FakeNSP", "Fault"]

FaultKind = Literal["http500", "http503", "http429", "timeout", "drop", "soap-fault", "latency"]


@attrs.frozen
class Fault:
    """One injected misbehaviour, used for the next ``times`` service calls."""

    kind: FaultKind
    times: int = 1
    seconds: float = 0.0  # latency / timeout length / Retry-After
    code: str = "soap:Client"
    text: str = "injected fault"


class FakeNSP:
    """A MinLog2 RegisterService and SOSI STS on loopback (see the module docstring).

    ``cvr``: the CVR the ID cards must name (None accepts any). ``version``: the schema
    version the service validates against. ``card_validity``: lifetime of issued cards.
    ``reject``: a callable returning a fault code for a registration to refuse, or None.
    ``refuse_request``: a callable returning ``(faultcode, text)`` to refuse a whole
    (schema-valid) request as a client fault, e.g. when it holds a certain entry.
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
    ) -> None:
        self.cvr = cvr
        self.version = version
        self.card_validity = card_validity
        self.clock = clock
        self.federation = federation or make_test_federation(clock=clock)
        self.reject = reject
        self.refuse_request = refuse_request
        self.received: list[Registration] = []
        self.requests: list[bytes] = []
        self.sts_requests: list[bytes] = []
        self.cards_issued = 0
        self.cards_refused = 0
        self.calls = 0
        self._faults: list[Fault] = []
        self._issued: set[str] = set()
        self._expired: set[str] = set()
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeNSP:
        handler = _make_handler(self)
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
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
        return f"http://{host!s}:{port}"

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

    def handle_sts(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self.sts_requests.append(body)
        try:
            answer = _dgws_issue(self, body)
        except MinlogError as e:
            with self._lock:
                self.cards_refused += 1
            return 500, _wire.encode_fault("wst:FailedAuthentication", str(e)), {}
        card_id = _card_id(_dgws.parse_security_token_response(answer).element())
        with self._lock:
            self.cards_issued += 1
            self._issued.add(card_id)
        return 200, answer, {}

    def handle_service(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self.calls += 1
            self.requests.append(body)
        try:
            self._check_card(body)
        except MinlogError as e:
            return 500, _wire.encode_fault("wsse:InvalidSecurityToken", str(e)), {}
        try:
            registrations = _wire.validate_request(body, version=self.version)
        except MinlogError as e:
            return 500, _wire.encode_fault("soap:Client", f"schema: {e}"), {}
        if self.refuse_request is not None:
            refusal = self.refuse_request(registrations)
            if refusal is not None:
                return 500, _wire.encode_fault(*refusal), {}
        failures: list[EntryFailure] = []
        accepted: list[Registration] = []
        for r in registrations:
            code = self.reject(r) if self.reject is not None else None
            if code is None:
                accepted.append(r)
            else:
                failures.append(EntryFailure(r.sequence_number or "", code, "refused"))
        with self._lock:
            self.received.extend(accepted)
        return 200, _wire.encode_response(len(accepted), failures), {}

    def _check_card(self, body: bytes) -> None:
        card = _dgws.card_from_request(body)
        signer = _dgws.verify(card, trusted=[self.federation.certificate])
        del signer
        not_before, not_after, cvr = _dgws.card_facts(card)
        now = utc_now(self.clock)
        if not not_before <= now < not_after:
            raise _dgws.CardRejected("the ID card is not valid now")
        with self._lock:
            expired = _card_id(card) in self._expired
        if expired:
            raise _dgws.CardRejected("the ID card has expired")
        if self.cvr is not None and cvr != self.cvr:
            raise _dgws.CardRejected("the ID card names another CVR")


def _card_id(card: Any) -> str:
    for a in card.iter(f"{{{_dgws.NS['saml']}}}Attribute"):
        if a.get("Name") == "sosi:IDCardID":
            return str(a.findtext(f"{{{_dgws.NS['saml']}}}AttributeValue") or "")
    return ""


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections dropped on purpose (fault injection) or by clients are not errors."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


def _dgws_issue(fake: FakeNSP, body: bytes) -> bytes:
    from minlog.testing.certs import issue_card

    return issue_card(fake.federation, body, clock=fake.clock, validity=fake.card_validity)


def _make_handler(fake: FakeNSP) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between header and body

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path == "/sts":
                self._answer(*fake.handle_sts(body))
                return
            if not self.path.endswith("/RegisterService"):
                self._answer(404, b"not found", {})
                return
            fault = fake._next_fault()
            if fault is not None and self._misbehave(fault):
                return
            try:
                answer = fake.handle_service(body)
            except Exception as e:  # a receiver bug must still answer, as a server fault
                answer = (500, _wire.encode_fault("soap:Server", f"{type(e).__name__}: {e}"), {})
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
                self._answer(status, _wire.encode_fault(fault.code, fault.text), {})
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
