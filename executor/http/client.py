"""HttpClient: requests over pooled keep-alive connections, with TLS, proxies and redirects."""

from __future__ import annotations

import http.client
import os
import select
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import SplitResult, quote, urlencode, urljoin, urlsplit

from executor.errors import NetworkError, TLSError
from executor.http.message import Body, Headers, Response
from executor.http.proxies import Origin, Proxies, Proxy, netloc

USER_AGENT = "farm-executor/0.1"
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Idle connections kept per origin: as many as parallel transfers use (requests keeps 10).
_MAX_IDLE_PER_ORIGIN = 10
# A response closed with at most this much body unread is read out, to keep its connection.
_DRAIN_BYTES = 64 << 10

Params = Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a connection (TLS included), and for each read after it."""

    connect: float
    read: float


class Sender(Protocol):
    """Sends a request and returns the response: an HttpClient, or a fake in tests."""

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Params | None = None,
        body: Body = None,
        follow_redirects: bool = True,
    ) -> Response: ...


def tls_context(*, verify: bool, environ: Mapping[str, str]) -> ssl.SSLContext:
    """TLS settings: verified against the system's CAs unless ``verify`` is off.

    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` work through OpenSSL; ``REQUESTS_CA_BUNDLE``
    or ``CURL_CA_BUNDLE`` (a file or a directory) replaces the system's CAs, as it
    does for requests and curl. Where the system has no CA store at all (minimal
    images), certifi's bundle is used if it is installed.
    """
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    bundle = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE")
    try:
        if bundle:
            if os.path.isdir(bundle):
                return ssl.create_default_context(capath=bundle)
            return ssl.create_default_context(cafile=bundle)
        context = ssl.create_default_context()
        if not context.cert_store_stats()["x509_ca"]:
            try:
                import certifi  # only here: its import costs more than a build should pay
            except ImportError:
                return context
            context.load_verify_locations(cafile=certifi.where())
        return context
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise TLSError(f"loading CA certificates from {bundle or 'the system'}: {exc}") from exc


class HttpClient:
    """Requests over pooled keep-alive connections; one per set of TLS settings. Thread-safe."""

    def __init__(
        self,
        timeouts: Timeouts,
        *,
        verify_tls: bool = True,
        user_agent: str = USER_AGENT,
        proxies: Proxies | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._timeouts = timeouts
        self._verify_tls = verify_tls
        self._user_agent = user_agent
        self._environ = os.environ if environ is None else environ
        self._proxies = Proxies.from_environ(self._environ) if proxies is None else proxies
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None  # made on the first HTTPS connection
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Params | None = None,
        body: Body = None,
        follow_redirects: bool = True,
    ) -> Response:
        """Send a request; with ``follow_redirects``, up to ``MAX_REDIRECTS`` of them.

        ``params`` are added to the URL's query. A ``Blocks`` body is streamed as
        it iterates, with its length as Content-Length. The response streams: read
        it to the end, or close it (a ``with`` block does), to free its connection.
        """
        if params:
            query = urlencode(list(params.items()) if isinstance(params, Mapping) else params)
            url = f"{url}{'&' if '?' in url else '?'}{query}"
        sent = _without(headers or {}, "Content-Length")  # the body says how long it is
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(method, url, sent, body)
            location = response.headers.get("Location")
            if not follow_redirects or response.status not in _REDIRECTS or not location:
                return response
            to_get = (response.status == 303 and method != "HEAD") or (
                response.status in (301, 302) and method == "POST"
            )
            if not to_get and not isinstance(body, bytes | None):
                return response  # a stream cannot be sent twice
            response.close()
            target = urljoin(url, location)
            if _origin(urlsplit(target)) != _origin(urlsplit(url)):
                sent = _without(sent, "Authorization")
            if to_get:
                method, body = "GET", None
                sent = _without(sent, "Content-Type")
            url = target
        raise NetworkError(f"{url}: more than {MAX_REDIRECTS} redirects", temporary=False)

    def close(self) -> None:
        """Close the idle connections; the client still works, and opens new ones."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    # -- one exchange -----------------------------------------------------------------

    def _send(self, method: str, url: str, headers: Mapping[str, str], body: Body) -> Response:
        parts = urlsplit(url)
        origin = _origin(parts)
        proxy = self._proxies.for_origin(origin)
        fields = {"User-Agent": self._user_agent, **headers}
        # Quoted as requests did: a space or a non-ASCII character (an ADD URL, a
        # redirect's Location) goes out percent-encoded; existing escapes stay.
        target = _quote(parts.path or "/") + (f"?{_quote(parts.query)}" if parts.query else "")
        if proxy is not None and origin[0] == "http":
            target = f"{parts.scheme}://{parts.netloc}{target}"  # a proxy takes the absolute URI
            if proxy.authorization:
                fields["Proxy-Authorization"] = proxy.authorization
        if body is not None or method in ("POST", "PUT", "PATCH"):
            fields["Content-Length"] = str(len(body or b""))
        connection = self._connection(origin, proxy)
        answered = False
        try:
            connection.putrequest(method, target)  # adds Host and Accept-Encoding: identity
            for name, value in fields.items():
                connection.putheader(name, value)
            if isinstance(body, bytes | None):
                connection.endheaders(body)
            else:
                connection.endheaders()
                for block in body:
                    connection.send(block)
            answer = connection.getresponse()
            answered = True
        except http.client.InvalidURL as exc:
            raise NetworkError(f"{url}: {exc}", temporary=False) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise NetworkError(f"{netloc(*origin[1:])}: {_reason(exc)}") from exc
        finally:
            if not answered:
                connection.close()
        return Response(
            answer.status,
            answer.reason,
            Headers(answer.getheaders()),
            _ConnectionBody(
                answer,
                netloc(*origin[1:]),
                lambda reusable: self._release(origin, connection, reusable),
            ),
        )

    def _connection(self, origin: Origin, proxy: Proxy | None) -> http.client.HTTPConnection:
        """An idle connection to ``origin`` that is still open, or a new one."""
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle:
                connection = idle.pop()
                if _still_open(connection):
                    return connection
                connection.close()
        return self._connect(origin, proxy)

    def _connect(self, origin: Origin, proxy: Proxy | None) -> http.client.HTTPConnection:
        scheme, host, port = origin
        address = (proxy.host, proxy.port) if proxy else (host, port)
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                *address, timeout=self._timeouts.connect, context=self._tls_context()
            )
            if proxy is not None:
                tunnel = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else {}
                connection.set_tunnel(host, port, headers=tunnel)
        else:
            connection = http.client.HTTPConnection(*address, timeout=self._timeouts.connect)
        try:
            connection.connect()
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            # The peer (often a load balancer) dropped the connection mid-handshake:
            # worth another try, unlike a certificate or protocol the client refuses.
            connection.close()
            raise NetworkError(f"TLS handshake with {netloc(host, port)} cut off: {exc}") from exc
        except ssl.SSLError as exc:
            connection.close()
            raise TLSError(f"TLS handshake with {netloc(host, port)} failed: {exc}") from exc
        except OSError as exc:
            connection.close()
            where = f"{proxy} (for {netloc(host, port)})" if proxy else netloc(host, port)
            raise NetworkError(f"{where} unreachable: {_reason(exc)}") from exc
        assert connection.sock is not None
        connection.sock.settimeout(self._timeouts.read)
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:
                self._tls = tls_context(verify=self._verify_tls, environ=self._environ)
            return self._tls

    def _release(
        self, origin: Origin, connection: http.client.HTTPConnection, reusable: bool
    ) -> None:
        if reusable:
            with self._lock:
                idle = self._idle.setdefault(origin, [])
                if len(idle) < _MAX_IDLE_PER_ORIGIN:
                    idle.append(connection)
                    return
        connection.close()


class _ConnectionBody:
    """A response body on its connection; the connection is released once, when read or closed.

    Reused only when the body was read to its end and the server keeps the connection.
    """

    def __init__(
        self, answer: http.client.HTTPResponse, where: str, release: Callable[[bool], None]
    ) -> None:
        self._answer = answer
        self._where = where
        self._release: Callable[[bool], None] | None = release

    def read(self, size: int = -1, /) -> bytes:
        answer = self._answer
        try:
            data = answer.read(None if size < 0 else size)
        except (OSError, http.client.HTTPException) as exc:
            self._done(False)
            raise NetworkError(f"{self._where}: {_reason(exc)}") from exc
        if not data and size != 0 and answer.length:
            # http.client returns b"" when a sized body ends early; say what it is.
            self._done(False)
            raise NetworkError(f"{self._where}: the answer broke off {answer.length} bytes short")
        if answer.isclosed():
            self._done(not answer.will_close)
        return data

    def close(self) -> None:
        if self._release is None:
            return
        answer = self._answer
        left = answer.length
        if not answer.isclosed() and left is not None and left <= _DRAIN_BYTES:
            try:
                answer.read()
            except (OSError, http.client.HTTPException):
                self._done(False)
                return
        self._done(answer.isclosed() and not answer.will_close)

    def _done(self, reusable: bool) -> None:
        release, self._release = self._release, None
        if release is None:
            return
        if not reusable:
            self._answer.close()
        release(reusable)


def _quote(text: str) -> str:
    """Percent-encode what may not stand in a request line; keep what is already encoded."""
    return quote(text, safe="!#$%&'()*+,/:;=?@[]~")


def _origin(parts: SplitResult) -> Origin:
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise NetworkError(f"{parts.geturl()!r}: not an http(s) URL", temporary=False)
    return scheme, parts.hostname, parts.port or _DEFAULT_PORTS[scheme]


def _without(headers: Mapping[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != name.lower()}


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """An idle connection the server has not closed: nothing to read on it (as urllib3 checks)."""
    if connection.sock is None:
        return False
    poller = select.poll()
    poller.register(connection.sock, select.POLLIN)
    return not poller.poll(0)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(exc, http.client.IncompleteRead):
        return f"the answer broke off {exc.expected} bytes short"
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return exc.strerror
    return str(exc) or type(exc).__name__
