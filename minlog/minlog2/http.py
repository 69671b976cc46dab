"""`Minlog2Transport`: ``AddRegistrations`` over HTTPS (httpx) with a DGWS system ID card.

Each `send` is one SOAP call: the batch as a ``RegistrationRequest``, the header with
``wsse:Security`` (timestamp + the STS-issued card, as the exact bytes the STS wrote) and
``medcom:Header``; ``Content-Type: text/xml;charset=utf-8`` and the SOAPAction
``AddRegistrations_<version>`` (or the WSDL's ``AddRegistrations``). The card is fetched
from the SOSI STS with the organisation's signed system card (SHA-256 by default, SHA-1
on request) and reused until shortly before it expires.

A card the service refuses (a DGWS ``expired_idcard``, ``invalid_idcard`` or
``invalid_signature`` fault, a WS-Security token fault, HTTP 401/403) is renewed once and
the batch sent again at once; a fresh card refused again fails the call (transient), so
that the retry policy, not a loop, decides when to try again. A card the STS itself
refuses is logged as an ERROR and fails the call with code ``sts-refused``.

TLS verification is always on (a custom CA bundle may be given; plain ``http://`` is only
accepted for loopback addresses, where the test receiver lives). The organisation's
certificate, with its intermediate CAs, may also be presented as the TLS client
certificate. Timeouts are explicit. Failures: connection errors, timeouts, 5xx, 408, 429
-> `TransientDeliveryError` (with ``Retry-After`` when given); a refused request ->
`PermanentDeliveryError`. See docs/wire.md and docs/security.md for every choice and its
source.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization

from minlog import forking
from minlog.core.clock import SYSTEM_CLOCK, Clock, utc_now
from minlog.errors import ConfigurationError, DeliveryError, TransientDeliveryError
from minlog.events import emit
from minlog.minlog2 import idcard as _dgws
from minlog.minlog2 import wire as _wire
from minlog.minlog2.registration import Registration
from minlog.minlog2.transport import BatchResult

__all__ = ["CARD_FAULTS", "STS_HEADERS", "Minlog2Transport", "soap_actions"]

#: The DGWS fault codes that mean "this ID card": a new card may cure them.
CARD_FAULTS: Final = frozenset({"dgws:expired_idcard", "dgws:invalid_idcard",
                                "dgws:invalid_signature"})
#: WS-Security's own fault codes about a token (gateways without DGWS codes).
_WSSE_CARD_FAULTS: Final = frozenset({"InvalidSecurityToken", "FailedAuthentication",
                                      "FailedCheck", "SecurityTokenUnavailable",
                                      "InvalidSecurity"})
#: The STS request's HTTP headers, as the authority's client sends them
#: (``SosiStsClientDgws``: SOAP 1.2's content type on a SOAP 1.1 envelope, no SOAPAction).
STS_HEADERS: Final = {"Content-Type": "application/soap+xml; charset=utf-8"}


def soap_actions(version: str) -> tuple[str, str]:
    """The SOAPAction values for ``version``: the decoupling component's
    ``AddRegistrations_<version>`` (the default: what the authority's own client sends to
    NSP, which routes on it) and the WSDL's plain ``AddRegistrations``."""
    return f"AddRegistrations_{version}", "AddRegistrations"


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if parts.scheme != "http" or not loopback:
        raise ConfigurationError(f"{name}: must be https:// (plain http only on loopback)")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class Minlog2Transport:
    """Delivers batches to MinLog2's RegisterService (see the module docstring).

    ``credentials``: the organisation's system certificate (`load_pkcs12`, `load_pem`), or
    a ``(pkcs12_bytes, password)`` pair; its intermediate certificates are presented in
    TLS with it (``client_certificate=True``). ``soap_action``: None (the default) sends
    ``AddRegistrations_<version>``, the decoupling component's form that the authority's
    client uses; ``"AddRegistrations"`` is the WSDL's own (`soap_actions`). ``digest``:
    ``"sha256"`` (default, as the authority's client) or ``"sha1"`` (DGWS 1.0.1, older
    STSs), for the card's signature and ``OCESCertHash``. ``issuer``: the card's
    ``saml:Issuer``, an xs:NCName (default ``"minlog"``). ``clock``: the time cards are
    made and judged by.
    """

    def __init__(
        self,
        *,
        service_url: str,
        sts_url: str,
        credentials: _dgws.SystemCredentials | tuple[bytes, bytes | None],
        cvr: str,
        system_name: str,
        care_provider_name: str,
        version: str = _wire.DEFAULT_VERSION,
        soap_action: str | None = None,
        digest: str = _dgws.DEFAULT_DIGEST,
        issuer: str = _dgws.DEFAULT_ISSUER,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        ca_bundle: str | os.PathLike[str] | None = None,
        client_certificate: bool = False,
        card_validity: _dt.timedelta = _dt.timedelta(hours=24),
        card_margin: _dt.timedelta = _dt.timedelta(minutes=5),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        _check_url("service_url", service_url)
        _check_url("sts_url", sts_url)
        if version not in _wire.NAMESPACES:
            raise ConfigurationError(f"version must be one of {', '.join(_wire.NAMESPACES)}")
        if isinstance(credentials, tuple):
            credentials = _dgws.load_pkcs12(*credentials)
        self.service_url = service_url
        self.sts_url = sts_url
        self.credentials = credentials
        self.cvr = cvr
        self.system_name = system_name
        self.care_provider_name = care_provider_name
        self.version = version
        self.soap_action = soap_actions(version)[0] if soap_action is None else soap_action
        if self.soap_action not in soap_actions(version):
            raise ConfigurationError(
                f"soap_action: must be {' or '.join(soap_actions(version))} "
                f"for version {version}")
        self.digest = _dgws.check_digest(digest)
        self.issuer = _dgws.check_issuer(issuer)
        self.card_validity = card_validity
        self.clock = clock
        self.cards = _dgws.CardCache(card_margin, clock=clock, cvr=cvr)
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._ssl = self._ssl_context(ca_bundle, client_certificate)
        self._client = self._make_client()

    def _ssl_context(self, ca_bundle: str | os.PathLike[str] | None,
                     client_certificate: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=os.fspath(ca_bundle) if ca_bundle else None)
        if client_certificate:
            key = self.credentials.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())
            chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (
                self.credentials.certificate, *self.credentials.chain))  # OCES3 intermediates
            with tempfile.TemporaryDirectory() as folder:  # mode 0700; removed at once
                path = os.path.join(folder, "client.pem")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(key + chain)
                context.load_cert_chain(path)
        return context

    def _make_client(self) -> httpx.Client:
        return httpx.Client(timeout=self._timeout, verify=self._ssl, follow_redirects=False)

    def after_fork(self) -> None:
        """In a forked child: a fresh connection pool (never the parent's sockets) and a
        card cache lock of its own."""
        forking.abandon(self._client)
        self._client = self._make_client()
        self.cards.after_fork()

    # ------------------------------------------------------------------ the card

    def _fetch_card(self) -> _dgws.IdCard:
        now = utc_now(self.clock)
        card = _dgws.build_id_card(self.credentials, cvr=self.cvr, system_name=self.system_name,
                                   care_provider_name=self.care_provider_name, now=now,
                                   validity=self.card_validity, issuer=self.issuer,
                                   digest=self.digest)
        _dgws.sign(card, self.credentials, digest=self.digest)
        body = _dgws.request_security_token(card, now=now, issuer=self.issuer)
        response = self._post(self.sts_url, body, STS_HEADERS)
        try:
            return _dgws.parse_security_token_response(response.content)
        except _dgws.CardRejected as e:
            if response.status_code >= 400 and b"Fault" not in response.content:
                raise TransientDeliveryError(f"STS answered HTTP {response.status_code}",
                                             code=f"sts-http-{response.status_code}") from e
            message = (f"STS refused the system ID card (check the certificate, CVR "
                       f"{self.cvr} and the system's registration at the STS): {e}")
            emit("sts_refused", "%s", message, cvr=self.cvr, code="sts-refused")
            raise TransientDeliveryError(message, code="sts-refused") from e
        except Exception as e:
            raise TransientDeliveryError(f"STS answer unreadable: {e}", code="sts") from e

    # ------------------------------------------------------------------ sending

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        try:
            return self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as e:
            raise TransientDeliveryError(f"timeout talking to {url}", code="timeout") from e
        except httpx.HTTPError as e:
            raise TransientDeliveryError(f"cannot reach {url}: {type(e).__name__}",
                                         code="connection") from e

    @staticmethod
    def _card_refused(error: DeliveryError, status: int) -> bool:
        code = error.code or ""
        return (code in CARD_FAULTS or status in (401, 403)
                or code.rsplit(":", 1)[-1] in _WSSE_CARD_FAULTS)

    def send(self, registrations: Sequence[Registration]) -> BatchResult:
        """One ``AddRegistrations`` call. A card the service refuses (a DGWS card fault,
        a WS-Security token fault, HTTP 401/403) is renewed once and the batch sent again
        at once; refused again, the call fails (transient) and the retry policy waits."""
        card = self.cards.get(self._fetch_card)
        renewed = False
        while True:
            body = _wire.encode_envelope(
                registrations, version=self.version,
                header=_dgws.security_header(card, now=utc_now(self.clock)))
            response = self._post(self.service_url, body, {
                "Content-Type": "text/xml;charset=utf-8", "SOAPAction": self.soap_action})
            try:
                return _wire.decode_response(response.content, response.status_code)
            except DeliveryError as e:
                if self._card_refused(e, response.status_code):
                    if renewed:
                        emit("card_refused_again", "the service refused a freshly issued ID "
                             "card: %s", e, cvr=self.cvr, code=e.code or "")
                        raise TransientDeliveryError(
                            f"the service refused a freshly issued ID card: {e}",
                            code=e.code) from e
                    emit("card_refused", "the service refused the ID card (%s); renewing it",
                         e.code, cvr=self.cvr, code=e.code or "")
                    card = self.cards.renew(card, self._fetch_card)
                    renewed = True
                    continue
                if isinstance(e, TransientDeliveryError) and e.retry_after is None:
                    raise TransientDeliveryError(str(e), code=e.code,
                                                 retry_after=_retry_after(response)) from e
                raise

    def close(self) -> None:
        self._client.close()
