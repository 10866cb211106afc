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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.support.ports import LOOPBACK

__all__ = ["ForwardProxy"]

_STOP_TIMEOUT_SECONDS = 5.0
_UPSTREAM_TIMEOUT_SECONDS = 10.0
_SPLICE_BLOCK = 1 << 16
# Headers for one hop only (RFC 9110 section 7.6.1), never forwarded.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "upgrade"}
)


class ForwardProxy:
    """An HTTP proxy in a daemon thread; `requests` lists ``"METHOD target"`` as they came."""

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self._lock = threading.Lock()
        self._requests: list[str] = []
        self._server = _ProxyServer(self)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, for HTTP_PROXY and HTTPS_PROXY."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def requests(self) -> Sequence[str]:
        """``"GET http://host/path"`` and ``"CONNECT host:port"`` lines, refused ones too."""
        with self._lock:
            return list(self._requests)

    def __enter__(self) -> ForwardProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=_STOP_TIMEOUT_SECONDS)

    def _record(self, line: str) -> None:
        with self._lock:
            self._requests.append(line)

    def _authorized(self, header: str | None) -> bool:
        if self.credentials is None:
            return True
        user, password = self.credentials
        expected = base64.b64encode(f"{user}:{password}".encode()).decode()
        return header == f"Basic {expected}"


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: ForwardProxy) -> None:
        super().__init__((LOOPBACK, 0), _ProxyHandler)
        self.owner = owner


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle delays the body.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def owner(self) -> ForwardProxy:
        assert isinstance(self.server, _ProxyServer)
        return self.server.owner

    def _admitted(self) -> bool:
        self.owner._record(f"{self.command} {self.path}")
        if self.owner._authorized(self.headers.get("Proxy-Authorization")):
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

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: `requests` is the log."""


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
