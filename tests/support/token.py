"""TokenIssuer: the Docker token-auth server a test registry trusts.

The issuer side of the distribution token spec
(https://distribution.github.io/distribution/spec/auth/token/). Tokens are ES256 JWTs
(https://distribution.github.io/distribution/spec/auth/jwt/) whose `x5c` header carries a
self-signed certificate; that certificate, written to `cert_path`, is the registry's
`auth.token.rootcertbundle`, so distribution 2.8 verifies the chain against it and takes
the signing key from the leaf. Every request is recorded for tests to assert on.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.ports import LOOPBACK
from tests.support.scopes import AccessPolicy, DefaultPolicy, Scope
from tests.support.tls import self_signed_certificate
from tests.support.token_http import TOKEN_PATH, TokenAsk, TokenHTTPServer, TokenRefusedError

__all__ = ["TokenIssuer", "TokenRequest"]

# Clients treat a lifetime under 60 s as 60 s (token spec, "expires_in"), and distribution
# 2.8 accepts a token up to 60 s past `exp` (its `Leeway`), so shorter lifetimes show only
# in what clients do, never in what the registry refuses.
DEFAULT_EXPIRES_IN_SECONDS = 300
DEFAULT_SERVICE = "farm-test-registry"
DEFAULT_ISSUER = "farm-test-issuer"
_STOP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class TokenRequest:
    """One request the issuer answered, kept so tests can assert on token reuse."""

    method: str  # "GET" or "POST"
    user: str | None  # the name presented, even when refused; None when anonymous
    service: str | None
    scopes: tuple[Scope, ...]
    status: int  # 200, or the error status sent
    time: float  # time.time() on arrival


class TokenIssuer:
    """Keys, certificate and an HTTP token endpoint on 127.0.0.1; a context manager.

    The registry's token mode reads `realm`, `service`, `issuer` and `cert_path`. `users`
    maps names to passwords; the policy decides what each gets (by default: a user
    everything asked, anonymous only `pull` and only with `anonymous_pull`).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str] | None = None,
        service: str = DEFAULT_SERVICE,
        issuer: str = DEFAULT_ISSUER,
        expires_in: int = DEFAULT_EXPIRES_IN_SECONDS,
        anonymous_pull: bool = False,
        policy: AccessPolicy | None = None,
    ) -> None:
        if policy is not None and anonymous_pull:
            raise ValueError("give either anonymous_pull or a policy, not both")
        self.workdir = workdir
        self.users = dict(users or {})
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.policy: AccessPolicy = policy or DefaultPolicy(anonymous_pull=anonymous_pull)
        self.cert_path = workdir / "token-issuer.crt"
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._cert = self_signed_certificate(self._key, issuer)
        # x5c holds standard (not URL-safe) base64 DER, leaf first (RFC 7515 section 4.1.6).
        self._x5c = [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()]
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self._server: TokenHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> TokenIssuer:
        """Write the certificate bundle and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("token issuer already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        server = TokenHTTPServer(self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"token-issuer-{server.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=_STOP_TIMEOUT_SECONDS)

    def __enter__(self) -> TokenIssuer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1."""
        if self._server is None:
            raise RuntimeError("token issuer not started")
        return self._server.port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def realm(self) -> str:
        """The token endpoint URL, as the registry names it in its Bearer challenge."""
        return f"{self.url}{TOKEN_PATH}"

    # -- what happened -------------------------------------------------------------------

    @property
    def requests(self) -> list[TokenRequest]:
        """A snapshot of every request answered so far, oldest first.

        Requests too malformed to parse (bad scope syntax, bad basic header) are not here.
        """
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests, e.g. between the phases of one test."""
        with self._lock:
            self._requests.clear()

    # -- issuing -------------------------------------------------------------------------

    def issue(self, user: str | None, scopes: Sequence[Scope], *, service: str) -> str:
        """Sign a token for `user` (None: anonymous) granting what the policy allows."""
        now = int(time.time())
        access = [
            {
                "type": scope.type,
                "name": scope.name,
                "actions": list(self.policy.grant(user, scope)),
            }
            for scope in scopes
        ]
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            # A string: distribution 2.8's ClaimSet.Audience is a string, not a list.
            "aud": service,
            "exp": now + self.expires_in,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": self._x5c})

    def answer(self, ask: TokenAsk) -> dict[str, object]:
        """Authenticate, authorize and sign one request; record it whatever the outcome."""
        status = HTTPStatus.OK
        try:
            if ask.service is not None and ask.service != self.service:
                raise TokenRefusedError(HTTPStatus.BAD_REQUEST, f"unknown service {ask.service!r}")
            self._authenticate(ask.user, ask.password)
            token = self.issue(ask.user, ask.scopes, service=self.service)
        except TokenRefusedError as exc:
            status = exc.status
            raise
        finally:
            entry = TokenRequest(ask.method, ask.user, ask.service, ask.scopes, status, ask.time)
            with self._lock:
                self._requests.append(entry)
        issued_at = datetime.datetime.fromtimestamp(ask.time, tz=datetime.UTC)
        return {
            "token": token,
            "access_token": token,  # the OAuth2 name; clients read either
            "expires_in": self.expires_in,
            "issued_at": issued_at.isoformat().replace("+00:00", "Z"),
        }

    def _authenticate(self, user: str | None, password: str | None) -> None:
        if user is None:
            return
        expected = self.users.get(user)
        if (
            expected is None
            or password is None
            or not secrets.compare_digest(expected.encode(), password.encode())
        ):
            raise TokenRefusedError(HTTPStatus.UNAUTHORIZED, f"bad credentials for {user!r}")
