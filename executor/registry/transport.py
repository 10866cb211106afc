"""HTTP to one registry endpoint: the ping, authentication, retries and error mapping.

Retried with exponential backoff: connection errors, timeouts, 429 and 5xx (with
``Retry-After`` honoured up to a cap). Never retried: 401, 403, 404 and other 4xx.
A 401 for a bearer token that was valid before (expired, or too narrow a scope)
is answered once by fetching a fresh token.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import requests

from executor.errors import (
    AuthenticationError,
    AuthorizationError,
    NotFoundError,
    RegistryError,
    RegistryUnavailableError,
)
from executor.registry.auth import Credentials, Keychain
from executor.registry.challenge import (
    DEFAULT_TOKEN_LIFETIME_SECONDS,
    Challenge,
    TokenCache,
    parse_challenges,
)
from executor.registry.hosts import Endpoint

USER_AGENT = "farm-executor/0.1"
# Connect fast, but let a slow registry stream a big blob.
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 120
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)

# bytes, a sized iterable of blocks (streamed with Content-Length), or a factory of either.
Body = bytes | Iterable[bytes] | Callable[[], Any] | None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry temporary failures."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), self.max_delay)
        backoff = min(self.base_delay * (2.0**attempt), self.max_delay)
        return backoff * (0.5 + random.random() / 2)  # jitter spreads out many workers


def _describe_response(response: requests.Response) -> str:
    """``401 UNAUTHORIZED: authentication required`` from the registry's error body."""
    text = f"{response.status_code}"
    try:
        body = response.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        parts = []
        for err in errors[:3]:
            if isinstance(err, dict):
                code, message = err.get("code", ""), err.get("message", "")
                parts.append(f"{code}: {message}" if message else str(code))
        return f"{text} {'; '.join(parts)}"
    reason = response.reason or ""
    snippet = " ".join(response.text[:200].split())
    return " ".join(p for p in (text, reason, snippet) if p)


def _error_codes(response: requests.Response) -> tuple[str, ...]:
    try:
        body = response.json()
    except ValueError:
        return ()
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ()
    return tuple(str(e.get("code")) for e in errors if isinstance(e, dict))


def error_for(response: requests.Response, what: str) -> RegistryError:
    """The classified error for an unexpected response."""
    status = response.status_code
    message = f"{what}: {_describe_response(response)}"
    codes = _error_codes(response)
    if status == 401:
        return AuthenticationError(message, status=status, codes=codes)
    if status == 403:
        return AuthorizationError(message, status=status, codes=codes)
    if status == 404:
        return NotFoundError(message, status=status, codes=codes)
    if status in _RETRY_STATUSES:
        return RegistryUnavailableError(message, status=status, codes=codes)
    return RegistryError(message, status=status, codes=codes)


class RegistryTransport:
    """Authenticated, retrying requests to one registry endpoint. Thread-safe."""

    def __init__(
        self,
        endpoint: Endpoint,
        keychain: Keychain,
        *,
        registry: str | None = None,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        tokens: TokenCache | None = None,
    ) -> None:
        self.endpoint = endpoint
        # The name credentials are looked up under (a mirror has its own).
        self.registry = registry or endpoint.host
        self._keychain = keychain
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._retry = retry or RetryPolicy()
        self._tokens = tokens or TokenCache()
        self._lock = threading.Lock()
        # One token fetch at a time, so parallel blob transfers share the first token.
        self._token_lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._pinged = False
        self._credentials: Credentials | None = None
        self._credentials_loaded = False

    # -- the public surface -------------------------------------------------

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry

    def url(self, path: str) -> str:
        return urljoin(self.endpoint.base_url + "/", path.lstrip("/"))

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        scopes: frozenset[str],
        what: str,
        ok: frozenset[int] = frozenset({200}),
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        allow_redirects: bool = True,
        retry: bool = True,
    ) -> requests.Response:
        """Send a request, authenticating and retrying as needed.

        Returns a response whose status is in ``ok``; raises a classified
        RegistryError otherwise. ``body`` may be a factory so a retry can
        re-open a stream.
        """
        self._ensure_pinged(what)
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        refreshed = False
        attempt = 0
        attempts = self._retry.attempts if retry else 1
        while True:
            auth = self._authorization(scopes, what)
            send_headers = dict(headers or {})
            if auth:
                send_headers["Authorization"] = auth
            data = body() if callable(body) else body
            try:
                response = self._session.request(
                    method,
                    url,
                    headers=send_headers,
                    params=params,
                    data=data,
                    stream=stream,
                    allow_redirects=allow_redirects,
                    verify=self.endpoint.verify_tls,
                    timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
                )
            except _NETWORK_ERRORS as exc:
                attempt += 1
                if attempt >= attempts:
                    raise RegistryUnavailableError(
                        f"{what}: {self.endpoint.host} unreachable: {_short(exc)}"
                    ) from exc
                self._retry.sleep(self._retry.delay(attempt))
                continue
            finally:
                close = getattr(data, "close", None)
                if callable(close):
                    close()
            if response.status_code in ok:
                return response
            if response.status_code == 401 and not refreshed and self._challenge is not None:
                # An expired or too-narrow token: fetch a fresh one once.
                refreshed = True
                self._on_unauthorized(response, scopes)
                response.close()
                continue
            if response.status_code in _RETRY_STATUSES:
                attempt += 1
                if attempt < attempts:
                    wait = self._retry.delay(attempt, response.headers.get("Retry-After"))
                    response.close()
                    self._retry.sleep(wait)
                    continue
            error = error_for(response, what)
            response.close()
            raise error

    # -- authentication ---------------------------------------------------------

    def _ensure_pinged(self, what: str) -> None:
        with self._lock:
            if self._pinged:
                return
            response = self._ping(what)
            if response.status_code == 401:
                challenges = parse_challenges(response.headers.get("WWW-Authenticate", ""))
                by_scheme = {c.scheme: c for c in challenges}
                self._challenge = by_scheme.get("bearer") or by_scheme.get("basic")
                if self._challenge is None:
                    raise AuthenticationError(
                        f"{what}: {self.endpoint.host} asks for an unsupported auth scheme "
                        f"{response.headers.get('WWW-Authenticate', '')!r}",
                        status=401,
                    )
            elif response.status_code != 200:
                raise error_for(response, f"{what}: pinging {self.endpoint.base_url}/v2/")
            self._pinged = True

    def _ping(self, what: str) -> requests.Response:
        def send() -> requests.Response:
            try:
                return self._session.get(
                    self.url("/v2/"),
                    verify=self.endpoint.verify_tls,
                    timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
                )
            except requests.exceptions.SSLError as exc:
                raise RegistryError(
                    f"{what}: TLS handshake with {self.endpoint.host} failed "
                    f"(use --insecure-registry for plain HTTP, or --skip-tls-verify): {_short(exc)}"
                ) from exc

        response = self._with_retries(send, f"{what}: {self.endpoint.host} unreachable")
        response.close()
        return response

    def _with_retries(
        self, send: Callable[[], requests.Response], unreachable: str
    ) -> requests.Response:
        """``send()`` again on connection errors, 429 and 5xx, with backoff; the last answer."""
        attempt = 0
        while True:
            try:
                response = send()
            except _NETWORK_ERRORS as exc:
                attempt += 1
                if attempt >= self._retry.attempts:
                    raise RegistryUnavailableError(f"{unreachable}: {_short(exc)}") from exc
                self._retry.sleep(self._retry.delay(attempt))
                continue
            if response.status_code in _RETRY_STATUSES and attempt + 1 < self._retry.attempts:
                attempt += 1
                self._retry.sleep(self._retry.delay(attempt, response.headers.get("Retry-After")))
                continue
            return response

    def _creds(self) -> Credentials | None:
        with self._lock:
            if not self._credentials_loaded:
                self._credentials = self._keychain.resolve(self.registry)
                self._credentials_loaded = True
            return self._credentials

    def _authorization(self, scopes: frozenset[str], what: str) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        creds = self._creds()
        if challenge.scheme == "basic":
            if creds is None or creds.empty:
                return None
            return requests.auth._basic_auth_str(creds.username, creds.password)
        with self._token_lock:
            token = self._tokens.get(challenge.realm, challenge.service, scopes)
            if token is None:
                token = self._fetch_token(challenge, scopes, creds, what)
        return f"Bearer {token}"

    def _on_unauthorized(self, response: requests.Response, scopes: frozenset[str]) -> None:
        if self._challenge is not None:
            self._tokens.drop(self._challenge.realm, self._challenge.service, scopes)
        fresh = parse_challenges(response.headers.get("WWW-Authenticate", ""))
        bearer = next((c for c in fresh if c.scheme == "bearer"), None)
        if bearer is not None and bearer.realm:
            self._challenge = Challenge("bearer", {**bearer.params})

    def _fetch_token(
        self, challenge: Challenge, scopes: frozenset[str], creds: Credentials | None, what: str
    ) -> str:
        if not challenge.realm:
            raise AuthenticationError(f"{what}: bearer challenge without a realm", status=401)
        params: list[tuple[str, str]] = []
        if challenge.service:
            params.append(("service", challenge.service))
        params.extend(("scope", s) for s in sorted(scopes))
        auth = None
        method, data = "GET", None
        if creds is not None and creds.identity_token:
            # OAuth2 refresh-token grant (token.md "Requesting a Token" via oauth.md).
            method = "POST"
            data = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "client_id": USER_AGENT,
                "service": challenge.service,
                "scope": " ".join(sorted(scopes)),
            }
            params = []
        elif creds is not None and not creds.empty:
            auth = (creds.username, creds.password)
            params.append(("account", creds.username))
        response = self._with_retries(
            lambda: self._session.request(
                method,
                challenge.realm,
                params=params,
                data=data,
                auth=auth,
                verify=self.endpoint.verify_tls,
                timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
            ),
            f"{what}: token service {challenge.realm} unreachable",
        )
        if response.status_code != 200:
            who = f"as {creds.username!r}" if creds and creds.username else "anonymously"
            raise error_for(response, f"{what}: getting a token from {challenge.realm} {who}")
        try:
            answer = response.json()
            token = str(answer.get("token") or answer.get("access_token") or "")
            lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_LIFETIME_SECONDS)
        except (ValueError, AttributeError) as exc:
            raise AuthenticationError(f"{what}: token service sent no JSON") from exc
        if not token:
            raise AuthenticationError(f"{what}: token service sent no token")
        self._tokens.put(challenge.realm, challenge.service, scopes, token, lifetime)
        return token


def _short(exc: BaseException) -> str:
    """The innermost reason of a requests error, without urllib3's object reprs."""
    text = str(exc)
    for marker in ("Failed to establish a new connection: ", "Caused by "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.rstrip(")").strip("'\" ")[:200]
