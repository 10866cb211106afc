"""Headers, responses and the basic-auth value."""

from __future__ import annotations

import base64
import io

import pytest

from executor.http import Headers, Response, basic_auth


def test_headers_are_found_in_any_case_and_repeats_are_joined() -> None:
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("WWW-Authenticate", 'Bearer realm="a"'),
            ("www-authenticate", 'Basic realm="b"'),
        ]
    )
    assert headers["content-type"] == headers.get("CONTENT-TYPE") == "application/json"
    assert headers["WWW-Authenticate"] == 'Bearer realm="a", Basic realm="b"'
    assert list(headers) == ["Content-Type", "WWW-Authenticate"]
    assert headers.get("Location") is None


class _Body(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.closes = 0

    def close(self) -> None:
        self.closes += 1
        super().close()


def test_a_response_body_streams_or_loads_once() -> None:
    body = _Body(b'{"errors": []}')
    response = Response(200, "OK", Headers(), body)
    assert response.read(2) == b'{"'
    assert response.content() == b'errors": []}'
    assert response.content() == b'errors": []}'  # kept, not read again
    assert body.closes == 1


def test_json_and_text() -> None:
    assert Response(200, "OK", Headers(), _Body(b'{"a": 1}')).json() == {"a": 1}
    with pytest.raises(ValueError):
        Response(200, "OK", Headers(), _Body(b"<html>")).json()
    assert Response(500, "", Headers(), _Body(b"bad \xff byte")).text == "bad \ufffd byte"


def test_a_response_closes_its_body_as_a_context_manager() -> None:
    body = _Body(b"x")
    with Response(200, "OK", Headers(), body) as response:
        assert response.status == 200
    assert body.closes == 1


def test_basic_auth_is_utf8_base64() -> None:
    value = basic_auth("zoë", "pa:ss")
    assert value.startswith("Basic ")
    assert base64.b64decode(value[6:]).decode() == "zoë:pa:ss"
