"""Retry and error classification, with the HTTP client faked (the seam under test)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import BinaryIO

import pytest

from executor.errors import (
    AuthorizationError,
    NetworkError,
    NotFoundError,
    RegistryError,
    RegistryUnavailableError,
    TLSError,
)
from executor.http import Body, Headers, Params, Response
from executor.oci.digest import Digest
from executor.oci.manifest import Descriptor
from executor.registry.auth import StaticKeychain
from executor.registry.client import RegistryClient
from executor.registry.hosts import Endpoint
from executor.registry.transport import RegistryTransport, RetryPolicy

Reply = int | tuple[int, dict[str, str]] | NetworkError


def _response(
    status: int, headers: Mapping[str, str] | None = None, body: object = None
) -> Response:
    data = json.dumps(body).encode() if body is not None else b""
    return Response(status, "", Headers((headers or {}).items()), io.BytesIO(data))


class FakeHttp:
    """Answers /v2/ with 200 and every other request from a script."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.calls: list[str] = []

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
        if url.endswith("/v2/"):
            return _response(200)
        self.calls.append(f"{method} {url}")
        reply = self.replies.pop(0)
        if isinstance(reply, NetworkError):
            raise reply
        if isinstance(reply, tuple):
            return _response(reply[0], reply[1])
        errors = {"errors": [{"code": "SOME_CODE", "message": f"status {reply}"}]}
        return _response(reply, body=errors if reply >= 400 else None)


def _transport(replies: list[Reply], sleeps: list[float]) -> tuple[RegistryTransport, FakeHttp]:
    http = FakeHttp(replies)
    policy = RetryPolicy(attempts=4, base_delay=0.1, max_delay=1.0, sleep=sleeps.append)
    transport = RegistryTransport(
        Endpoint("reg.example"), StaticKeychain({}), http=http, retry=policy
    )
    return transport, http


def _get(transport: RegistryTransport) -> Response:
    return transport.request("GET", "/v2/a/manifests/1", scopes=frozenset(), what="pulling a:1")


@pytest.mark.parametrize(
    ("replies", "calls"),
    [
        ([503, 200], 2),
        ([500, 502, 504, 200], 4),
        ([(429, {"Retry-After": "0"}), 200], 2),
        ([NetworkError("reg.example:443: Connection reset by peer"), 200], 2),
        ([NetworkError("reg.example:443: timed out"), 503, 200], 3),
    ],
)
def test_temporary_failures_are_retried(replies: list[Reply], calls: int) -> None:
    sleeps: list[float] = []
    transport, http = _transport(replies, sleeps)
    assert _get(transport).status == 200
    assert len(http.calls) == calls
    assert len(sleeps) == calls - 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, AuthorizationError), (404, NotFoundError), (400, RegistryError)],
)
def test_permanent_failures_are_not_retried(status: int, error: type[RegistryError]) -> None:
    sleeps: list[float] = []
    transport, http = _transport([status, 200], sleeps)
    with pytest.raises(error, match=rf"pulling a:1: {status} SOME_CODE: status {status}") as info:
        _get(transport)
    assert not info.value.temporary
    assert len(http.calls) == 1 and sleeps == []


def test_giving_up_after_the_last_attempt_is_temporary() -> None:
    sleeps: list[float] = []
    transport, http = _transport([503, 503, 503, 503], sleeps)
    with pytest.raises(RegistryUnavailableError, match="503") as info:
        _get(transport)
    assert info.value.temporary and len(http.calls) == 4


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    sleeps: list[float] = []
    transport, _ = _transport(
        [(429, {"Retry-After": "7"}), (503, {"Retry-After": "0"}), 200], sleeps
    )
    _get(transport)
    assert sleeps == [1.0, 0.0]


def test_backoff_grows() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=100.0)
    values = [policy.delay(a) for a in range(1, 5)]
    for attempt, value in enumerate(values, start=1):
        assert 2 ** (attempt - 1) <= value <= 2**attempt


def test_a_network_error_that_persists_is_temporary() -> None:
    sleeps: list[float] = []
    transport, http = _transport([NetworkError("reg.example:443: timed out")] * 4, sleeps)
    with pytest.raises(RegistryUnavailableError, match=r"pulling a:1: reg.example:443: timed out"):
        _get(transport)
    assert len(http.calls) == 4


def test_a_tls_failure_is_not_retried() -> None:
    sleeps: list[float] = []
    transport, http = _transport(
        [TLSError("TLS handshake with reg.example:443 failed"), 200], sleeps
    )
    with pytest.raises(RegistryError, match="TLS handshake") as info:
        _get(transport)
    assert not info.value.temporary
    assert len(http.calls) == 1 and sleeps == []


def test_a_mount_answered_without_a_location_falls_back_to_a_fresh_upload() -> None:
    """A 202 naming no upload session: the upload opens its own (POST), then PUTs."""
    data = b"blob"
    descriptor = Descriptor("application/octet-stream", Digest.of(data), len(data))
    transport, http = _transport([202, (202, {"Location": "/v2/app/blobs/uploads/u1"}), 201], [])

    @contextmanager
    def opener() -> Iterator[BinaryIO]:
        yield io.BytesIO(data)

    client = RegistryClient(transport, "reg.example")
    assert client.push_blob("app", descriptor, opener, mount_from=["base"]) is False
    assert [call.split(" ")[0] for call in http.calls] == ["POST", "POST", "PUT"]
    assert http.calls[2].endswith("/v2/app/blobs/uploads/u1")  # the session the POST opened
