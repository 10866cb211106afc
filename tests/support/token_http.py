"""The HTTP face of the token issuer: parse `/token` requests, write JSON answers.

`GET /token?service=S&scope=...` with optional basic credentials is the token spec's
request (https://distribution.github.io/distribution/spec/auth/token/); `POST /token`
with an OAuth2 password-grant form is the OAuth variant
(https://distribution.github.io/distribution/spec/auth/oauth/). What to answer is the
TokenEndpoint's business; this module only speaks HTTP.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from tests.support.ports import LOOPBACK
from tests.support.scopes import Scope, parse_scope

__all__ = ["TokenAsk", "TokenEndpoint", "TokenHTTPServer", "TokenRefusedError"]

TOKEN_PATH = "/token"


@dataclass(frozen=True)
class TokenAsk:
    """One token request as it arrived, parsed."""

    method: str  # "GET" (token spec) or "POST" (OAuth2 password grant)
    user: str | None  # None when no credentials came
    password: str | None
    service: str | None
    scopes: tuple[Scope, ...]
    time: float  # time.time() on arrival


class TokenRefusedError(Exception):
    """A token request answered with an error status instead of a token."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class TokenEndpoint(Protocol):
    """Turns a parsed request into the JSON body of a token response."""

    def answer(self, ask: TokenAsk) -> Mapping[str, object]:
        """Return the response body, or raise TokenRefusedError."""
        ...


class TokenHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 and a kernel-chosen port (no race)."""

    daemon_threads = True

    def __init__(self, endpoint: TokenEndpoint) -> None:
        super().__init__((LOOPBACK, 0), _TokenHandler)
        self.endpoint = endpoint

    @property
    def port(self) -> int:
        """The TCP port the server is bound to."""
        port: int = self.server_address[1]
        return port


def _parse_scopes(values: Sequence[str]) -> tuple[Scope, ...]:
    """Parse repeated `scope` parameters; one parameter may hold several, space-separated."""
    try:
        return tuple(parse_scope(part) for value in values for part in value.split())
    except ValueError as exc:
        raise TokenRefusedError(HTTPStatus.BAD_REQUEST, str(exc)) from exc


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    if not header:
        return None, None
    kind, _, value = header.partition(" ")
    if kind.lower() != "basic":
        raise TokenRefusedError(HTTPStatus.UNAUTHORIZED, f"unsupported authorization {kind!r}")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise TokenRefusedError(HTTPStatus.BAD_REQUEST, "malformed basic credentials") from exc
    user, _, password = decoded.partition(":")
    return user, password


def _first(fields: Mapping[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


class _TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        arrived = time.time()
        url = urlsplit(self.path)
        if url.path != TOKEN_PATH:
            self._send_json(HTTPStatus.NOT_FOUND, {"errors": [{"code": "NOT_FOUND"}]})
            return
        self._respond(lambda: self._parse_get(parse_qs(url.query), arrived))

    def do_POST(self) -> None:
        arrived = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        if urlsplit(self.path).path != TOKEN_PATH:
            self._send_json(HTTPStatus.NOT_FOUND, {"errors": [{"code": "NOT_FOUND"}]})
            return
        self._respond(lambda: self._parse_post(form, arrived))

    def _parse_get(self, query: Mapping[str, list[str]], arrived: float) -> TokenAsk:
        user, password = _basic_credentials(self.headers.get("Authorization"))
        scopes = _parse_scopes(query.get("scope", []))
        return TokenAsk("GET", user, password, _first(query, "service"), scopes, arrived)

    def _parse_post(self, form: Mapping[str, list[str]], arrived: float) -> TokenAsk:
        grant = _first(form, "grant_type")
        if grant != "password":
            # No refresh tokens are issued, so the password grant is the only one.
            raise TokenRefusedError(HTTPStatus.BAD_REQUEST, f"unsupported grant_type {grant!r}")
        user, password = _first(form, "username"), _first(form, "password")
        scopes = _parse_scopes(form.get("scope", []))
        return TokenAsk("POST", user, password, _first(form, "service"), scopes, arrived)

    def _respond(self, parse: Callable[[], TokenAsk]) -> None:
        assert isinstance(self.server, TokenHTTPServer)
        try:
            body = self.server.endpoint.answer(parse())
        except TokenRefusedError as exc:
            headers = {}
            if exc.status == HTTPStatus.UNAUTHORIZED:
                headers["WWW-Authenticate"] = 'Basic realm="token"'
            error = {"code": exc.status.name, "message": str(exc)}
            self._send_json(exc.status, {"errors": [error]}, headers)
            return
        self._send_json(HTTPStatus.OK, body)

    def _send_json(
        self,
        status: HTTPStatus,
        body: Mapping[str, object],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the issuer's recorded requests are the log."""
