"""A registry stand-in whose uploads stall, for what a build does when a registry hangs.

It answers the ping, has no blob, opens an upload session for every POST, reads the
bytes of the PUT (or PATCH) that follows and then holds it unanswered: until
`release()`, which answers 201, or `stop()`, which closes the connection with no
answer. `GET /stalled` says `yes` while an upload is held, so a RUN step can wait for
it with busybox wget. A context manager, on 127.0.0.1 and a kernel-chosen port.
"""

from __future__ import annotations

import threading
import time
from http import HTTPStatus

from tests.support.ports import LOOPBACK
from tests.support.web import BackgroundServer, LoopbackHandler

__all__ = ["StallingRegistry"]

STALLED_PATH = "/stalled"


class StallingRegistry(BackgroundServer):
    """A registry whose blob uploads never get an answer unless released."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.stalled = threading.Event()  # an upload is held
        self.stalled_at: float | None = None  # time.monotonic() when the first was
        self._release = threading.Event()
        self._stop = threading.Event()

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, as an image reference names the registry."""
        return f"{LOOPBACK}:{self.port}"

    def release(self) -> None:
        """Answer the held uploads (and those to come) with 201 Created."""
        self._release.set()

    def hold(self) -> bool:
        """Called by a handler with an upload's bytes read: True to answer it."""
        if self.stalled_at is None:
            self.stalled_at = time.monotonic()
        self.stalled.set()
        while not self._stop.is_set():
            if self._release.wait(0.05):
                return True
        return False

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()  # held uploads end unanswered
        super().__exit__(*exc_info)


class _Handler(LoopbackHandler):
    @property
    def _registry(self) -> StallingRegistry:
        owner = self.owner
        assert isinstance(owner, StallingRegistry)
        return owner

    def do_GET(self) -> None:
        if self.path == "/v2/":
            self._answer(HTTPStatus.OK, b"{}")
        elif self.path == STALLED_PATH:
            self._answer(HTTPStatus.OK, b"yes" if self._registry.stalled.is_set() else b"no")
        else:
            self._answer(HTTPStatus.NOT_FOUND)

    def do_HEAD(self) -> None:
        self._answer(HTTPStatus.NOT_FOUND)  # no blob, no manifest

    def do_POST(self) -> None:
        self._read_body()
        if "/blobs/uploads/" not in self.path:
            self._answer(HTTPStatus.NOT_FOUND)
            return
        location = self.path.split("?")[0].rstrip("/") + "/session"
        self._answer(HTTPStatus.ACCEPTED, headers={"Location": location})

    def do_PUT(self) -> None:
        self._read_body()
        if self._registry.hold():
            self._answer(HTTPStatus.CREATED)
        else:
            self.close_connection = True

    do_PATCH = do_PUT

    def _read_body(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(
        self, status: HTTPStatus, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
