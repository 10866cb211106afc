"""Retry and error classification, with the HTTP session faked (the seam under test)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import requests

from executor.errors import (
    AuthorizationError,
    NotFoundError,
    RegistryError,
    RegistryUnavailableError,
)
from executor.registry.auth import StaticKeychain
from executor.registry.hosts import Endpoint
from executor.registry.transport import RegistryTransport, RetryPolicy

Reply = int | tuple[int, dict[str, str]] | Exception


def _response(
    status: int, headers: dict[str, str] | None = None, body: Any = None
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response._content = json.dumps(body).encode() if body is not None else b""
    response.raw = io.BytesIO(b"")
    return response


class FakeSession(requests.Session):
    """Answers /v2/ with 200 and every other request from a script."""

    def __init__(self, replies: list[Reply]) -> None:
        super().__init__()
        self.replies = replies
        self.calls: list[str] = []

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if str(url).endswith("/v2/"):
            return _response(200)
        self.calls.append(f"{method!s} {url!s}")
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, tuple):
            return _response(reply[0], reply[1])
        errors = {"errors": [{"code": "SOME_CODE", "message": f"status {reply}"}]}
        return _response(reply, body=errors if reply >= 400 else None)

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, **kwargs)


def _transport(replies: list[Reply], sleeps: list[float]) -> tuple[RegistryTransport, FakeSession]:
    session = FakeSession(replies)
    policy = RetryPolicy(attempts=4, base_delay=0.1, max_delay=1.0, sleep=sleeps.append)
    transport = RegistryTransport(
        Endpoint("reg.example"), StaticKeychain({}), session=session, retry=policy
    )
    return transport, session


def _get(transport: RegistryTransport) -> requests.Response:
    return transport.request("GET", "/v2/a/manifests/1", scopes=frozenset(), what="pulling a:1")


@pytest.mark.parametrize(
    ("replies", "calls"),
    [
        ([503, 200], 2),
        ([500, 502, 504, 200], 4),
        ([(429, {"Retry-After": "0"}), 200], 2),
        ([requests.ConnectionError("reset"), 200], 2),
        ([requests.Timeout("slow"), 200], 2),
    ],
)
def test_temporary_failures_are_retried(replies: list[Reply], calls: int) -> None:
    sleeps: list[float] = []
    transport, session = _transport(replies, sleeps)
    assert _get(transport).status_code == 200
    assert len(session.calls) == calls
    assert len(sleeps) == calls - 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, AuthorizationError), (404, NotFoundError), (400, RegistryError)],
)
def test_permanent_failures_are_not_retried(status: int, error: type[RegistryError]) -> None:
    sleeps: list[float] = []
    transport, session = _transport([status, 200], sleeps)
    with pytest.raises(error, match=rf"pulling a:1: {status} SOME_CODE: status {status}") as info:
        _get(transport)
    assert not info.value.temporary
    assert len(session.calls) == 1 and sleeps == []


def test_giving_up_after_the_last_attempt_is_temporary() -> None:
    sleeps: list[float] = []
    transport, session = _transport([503, 503, 503, 503], sleeps)
    with pytest.raises(RegistryUnavailableError, match="503") as info:
        _get(transport)
    assert info.value.temporary and len(session.calls) == 4


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
