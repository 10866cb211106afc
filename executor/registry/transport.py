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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin

from executor.errors import (
    AuthenticationError,
    AuthorizationError,
    NetworkError,
    NotFoundError,
    RegistryError,
    RegistryUnavailableError,
    TLSError,
)
from executor.http import Body, HttpClient, Response, Sender, Timeouts, basic_auth
from executor.http.client import USER_AGENT
from executor.registry.auth import Credentials, Keychain
from executor.registry.challenge import (
    DEFAULT_TOKEN_LIFETIME_SECONDS,
    Challenge,
    TokenCache,
    parse_challenges,
)
from executor.registry.hosts import Endpoint

# Connect fast, but let a slow registry stream a big blob.
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 120
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# bytes, a sized iterable of blocks (streamed with Content-Length), or a factory of either.
BodyOrFactory = Body | Callable[[], Body]


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


def _describe_response(response: Response) -> str:
    """``401 UNAUTHORIZED: authentication required`` from the registry's error body."""
    text = f"{response.status}"
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


def _error_codes(response: Response) -> tuple[str, ...]:
    try:
        body = response.json()
    except ValueError:
        return ()
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ()
    return tuple(str(e.get("code")) for e in errors if isinstance(e, dict))


def error_for(response: Response, what: str) -> RegistryError:
    """The classified error for an unexpected response."""
    status = response.status
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
        http: Sender | None = None,
        retry: RetryPolicy | None = None,
        tokens: TokenCache | None = None,
    ) -> None:
        self.endpoint = endpoint
        # The name credentials are looked up under (a mirror has its own).
        self.registry = registry or endpoint.host
        self._keychain = keychain
        self._http = http or HttpClient(
            Timeouts(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
            verify_tls=endpoint.verify_tls,
        )
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
        body: BodyOrFactory = None,
        stream: bool = False,
        allow_redirects: bool = True,
        retry: bool = True,
    ) -> Response:
        """Send a request, authenticating and retrying as needed.

        Returns a response whose status is in ``ok``; raises a classified
        RegistryError otherwise. ``body`` may be a factory so a retry can
        re-open a stream. Without ``stream`` the body is read before returning,
        so the connection is free again; with it, the caller reads and closes.
        """
        self._ensure_pinged(what)
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)

        def send() -> Response:
            auth = self._authorization(scopes, what)
            send_headers = dict(headers or {})
            if auth:
                send_headers["Authorization"] = auth
            data = body() if callable(body) else body
            try:
                return self._http.request(
                    method,
                    url,
                    headers=send_headers,
                    params=params,
                    body=data,
                    follow_redirects=allow_redirects,
                )
            finally:
                close = getattr(data, "close", None)
                if callable(close):
                    close()

        attempts = self._retry.attempts if retry else 1
        refreshed = False
        while True:
            response = self._with_retries(send, what, attempts=attempts, read=not stream)
            if response.status in ok:
                return response
            if response.status == 401 and not refreshed and self._challenge is not None:
                # An expired or too-narrow token: fetch a fresh one once.
                refreshed = True
                self._on_unauthorized(response, scopes)
                response.close()
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
            if response.status == 401:
                challenges = parse_challenges(response.headers.get("WWW-Authenticate", ""))
                by_scheme = {c.scheme: c for c in challenges}
                self._challenge = by_scheme.get("bearer") or by_scheme.get("basic")
                if self._challenge is None:
                    raise AuthenticationError(
                        f"{what}: {self.endpoint.host} asks for an unsupported auth scheme "
                        f"{response.headers.get('WWW-Authenticate', '')!r}",
                        status=401,
                    )
            elif response.status != 200:
                raise error_for(response, f"{what}: pinging {self.endpoint.base_url}/v2/")
            self._pinged = True

    def _ping(self, what: str) -> Response:
        def send() -> Response:
            try:
                return self._http.request("GET", self.url("/v2/"))
            except TLSError as exc:
                raise RegistryError(
                    f"{what}: {exc} (use --insecure-registry for plain HTTP, or --skip-tls-verify)"
                ) from exc

        return self._with_retries(send, what)

    def _with_retries(
        self,
        send: Callable[[], Response],
        what: str,
        *,
        attempts: int | None = None,
        read: bool = True,
    ) -> Response:
        """``send()`` again on connection errors, 429 and 5xx, with backoff, up to
        ``attempts`` times in all; the last answer. With ``read``, its body is read,
        so its connection is free again; without, the caller reads and closes it.
        """
        attempts = self._retry.attempts if attempts is None else attempts
        attempt = 0
        while True:
            try:
                response = send()
                if read:
                    response.content()
            except NetworkError as exc:
                attempt += 1
                if not exc.temporary or attempt >= attempts:
                    raise _unreachable(what, exc) from exc
                self._retry.sleep(self._retry.delay(attempt))
                continue
            if response.status in _RETRY_STATUSES and attempt + 1 < attempts:
                attempt += 1
                wait = self._retry.delay(attempt, response.headers.get("Retry-After"))
                response.close()
                self._retry.sleep(wait)
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
            return basic_auth(creds.username, creds.password)
        with self._token_lock:
            token = self._tokens.get(challenge.realm, challenge.service, scopes)
            if token is None:
                token = self._fetch_token(challenge, scopes, creds, what)
        return f"Bearer {token}"

    def _on_unauthorized(self, response: Response, scopes: frozenset[str]) -> None:
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
        headers: dict[str, str] = {}
        method, form = "GET", None
        if creds is not None and creds.identity_token:
            # OAuth2 refresh-token grant (token.md "Requesting a Token" via oauth.md).
            method = "POST"
            form = urlencode(
                {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "client_id": USER_AGENT,
                    "service": challenge.service,
                    "scope": " ".join(sorted(scopes)),
                }
            ).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            params = []
        elif creds is not None and not creds.empty:
            headers["Authorization"] = basic_auth(creds.username, creds.password)
            params.append(("account", creds.username))
        response = self._with_retries(
            lambda: self._http.request(
                method, challenge.realm, headers=headers, params=params, body=form
            ),
            f"{what}: getting a token from {challenge.realm}",
        )
        if response.status != 200:
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


def _unreachable(what: str, exc: NetworkError) -> RegistryError:
    """The error for a request that got no complete answer; temporary if the cause is."""
    if exc.temporary:
        return RegistryUnavailableError(f"{what}: {exc}")
    return RegistryError(f"{what}: {exc}")
