"""A forward proxy on 127.0.0.1 that records what went through it: HTTP and CONNECT tunnels.

Plain HTTP arrives with an absolute URI in the request line and is forwarded on a new
upstream connection per request; HTTPS arrives as `CONNECT host:port`, answered with 200
and then spliced byte for byte. With `credentials`, a request without the matching
`Proxy-Authorization: Basic` is refused with 407.
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
import threading
from collections.abc import Sequence
from urllib.parse import urlsplit

from tests.support.web import BackgroundServer, LoopbackHandler

__all__ = ["ForwardProxy"]

_UPSTREAM_TIMEOUT_SECONDS = 10.0
_SPLICE_BLOCK = 1 << 16
# Headers for one hop only (RFC 9110 section 7.6.1), never forwarded.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "upgrade"}
)


class ForwardProxy(BackgroundServer):
    """An HTTP proxy (`url` for HTTP_PROXY and HTTPS_PROXY) that lists what it was asked."""

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        super().__init__(_ProxyHandler)
        self.credentials = credentials
        self._lock = threading.Lock()
        self._requests: list[str] = []

    @property
    def requests(self) -> Sequence[str]:
        """``"GET http://host/path"`` and ``"CONNECT host:port"`` lines, refused ones too."""
        with self._lock:
            return list(self._requests)

    def _record(self, line: str) -> None:
        with self._lock:
            self._requests.append(line)

    def _authorized(self, header: str | None) -> bool:
        if self.credentials is None:
            return True
        user, password = self.credentials
        expected = base64.b64encode(f"{user}:{password}".encode()).decode()
        return header == f"Basic {expected}"


class _ProxyHandler(LoopbackHandler):
    def _proxy(self) -> ForwardProxy:
        owner = self.owner
        assert isinstance(owner, ForwardProxy)
        return owner

    def _admitted(self) -> bool:
        proxy = self._proxy()
        proxy._record(f"{self.command} {self.path}")
        if proxy._authorized(self.headers.get("Proxy-Authorization")):
            return True
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="test-proxy"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_CONNECT(self) -> None:
        if not self._admitted():
            return
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), _UPSTREAM_TIMEOUT_SECONDS)
        except OSError:
            self.send_error(502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        with upstream:
            _splice(self.connection, upstream)
        self.close_connection = True

    def _forward(self) -> None:
        if not self._admitted():
            return
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        target = url.path + (f"?{url.query}" if url.query else "")
        upstream = http.client.HTTPConnection(
            url.hostname or "", url.port or 80, timeout=_UPSTREAM_TIMEOUT_SECONDS
        )
        try:
            upstream.request(self.command, target, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in _HOP_BY_HOP | {"transfer-encoding", "content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", answer.getheader("Content-Length", str(len(data))))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward


def _splice(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [client, upstream]
    while True:
        readable, _, _ = select.select(sockets, [], [], _UPSTREAM_TIMEOUT_SECONDS)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(_SPLICE_BLOCK)
            if not data:
                return
            (upstream if sock is client else client).sendall(data)
