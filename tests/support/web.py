"""Plain HTTP for tests: `fetch` as a third-party client, and a scripted server that records.

`fetch` is urllib's, not the executor's client, so a test that checks the executor's
HTTP against a server does not check it with itself; it ignores proxy variables and
does not verify TLS (test certificates are self-signed). `RecordingServer` answers
every request through a function and keeps what arrived, with the number of the TCP
connection it came on, so tests can count connections and look at headers.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import urlencode

from tests.support.ports import LOOPBACK

__all__ = [
    "BackgroundServer",
    "Fetched",
    "LoopbackHandler",
    "RecordingServer",
    "Reply",
    "Seen",
    "fetch",
]

_TIMEOUT_SECONDS = 10
_STOP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Fetched:
    """A response as `fetch` got it: status, headers (lower-case names) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def fetch(
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    timeout: float = _TIMEOUT_SECONDS,
) -> Fetched:
    """GET `url` (POST when `form` is given); error statuses are answers too, not exceptions.

    `auth` is sent as basic credentials, without waiting for a challenge.
    """
    if params:
        url = f"{url}?{urlencode(params)}"
    data = urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data)
    if auth is not None:
        user, password = auth
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            status, answer, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer, body = error.code, error.headers, error.read()
    return Fetched(status, {k.lower(): v for k, v in answer.items()}, body)


@dataclass(frozen=True)
class Seen:
    """One request as it arrived."""

    method: str
    target: str  # as in the request line: a path, or an absolute URI sent to a proxy
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    connection: int  # which TCP connection it came on, counting from 1


@dataclass(frozen=True)
class Reply:
    """What to answer: status, headers and body (Content-Length is added)."""

    status: int = 200
    headers: Mapping[str, str] | None = None
    body: bytes = b""


class BackgroundServer:
    """An http.server on 127.0.0.1 and a kernel-chosen port in a daemon thread; a context manager.

    Requests go to `handler`, a LoopbackHandler whose `owner` is this object.
    """

    def __init__(self, handler: type[LoopbackHandler]) -> None:
        self._server = _OwnedServer(self, handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> Self:
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


class _OwnedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: BackgroundServer, handler: type[LoopbackHandler]) -> None:
        super().__init__((LOOPBACK, 0), handler)
        self.owner = owner


class LoopbackHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 without a log; `owner` is the BackgroundServer it serves."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle holds the body
        # back until the client's delayed ACK, 40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def owner(self) -> BackgroundServer:
        assert isinstance(self.server, _OwnedServer)
        return self.server.owner

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the owner keeps what tests look at."""


class RecordingServer(BackgroundServer):
    """A server answering every request through `answer`, keeping what arrived."""

    def __init__(self, answer: Callable[[Seen], Reply]) -> None:
        super().__init__(_RecordingHandler)
        self.answer = answer
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._connections = 0

    @property
    def seen(self) -> Sequence[Seen]:
        """The requests so far, in order of arrival."""
        with self._lock:
            return list(self._seen)

    @property
    def connections(self) -> int:
        """How many TCP connections were accepted so far."""
        with self._lock:
            return self._connections

    def _connected(self) -> int:
        with self._lock:
            self._connections += 1
            return self._connections

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)


class _RecordingHandler(LoopbackHandler):
    def setup(self) -> None:
        super().setup()
        self.connection_number = self._recorder()._connected()

    def _recorder(self) -> RecordingServer:
        owner = self.owner
        assert isinstance(owner, RecordingServer)
        return owner

    def _serve(self) -> None:
        recorder = self._recorder()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        seen = Seen(self.command, self.path, headers, body, self.connection_number)
        recorder._record(seen)
        reply = recorder.answer(seen)
        self.send_response(reply.status)
        for name, value in (reply.headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve
