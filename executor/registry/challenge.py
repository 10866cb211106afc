"""WWW-Authenticate challenges (RFC 7235) and the bearer tokens they ask for.

Docker's token flow (distribution spec/auth/token.md): the registry answers 401
with ``Bearer realm=...,service=...``; the client asks the realm for a token for
the scopes it needs (``repository:NAME:pull,push``), with basic credentials if it
has any, and sends it as ``Authorization: Bearer``. Tokens are reused until
shortly before they expire.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

_PARAM = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
# Tokens without expires_in live 60 s (token.md "Token Response Fields").
DEFAULT_TOKEN_LIFETIME_SECONDS = 60
# Renew this long before expiry, so a token never dies in flight.
_EXPIRY_MARGIN_SECONDS = 10


@dataclass(frozen=True)
class Challenge:
    """One auth challenge: ``Basic`` or ``Bearer`` with its parameters."""

    scheme: str  # lower case
    params: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate header value; unknown schemes are kept too."""
    challenges: list[Challenge] = []
    pos = 0
    header = header.strip()
    while pos < len(header):
        m = re.match(r"\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)\s*", header[pos:])
        if m is None:
            break
        scheme = m.group(1).lower()
        pos += m.end()
        params: dict[str, str] = {}
        while True:
            pm = _PARAM.match(header, pos)
            if pm is None:
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = pm.end()
            comma = re.match(r"\s*,\s*", header[pos:])
            if comma is None:
                break
            pos += comma.end()
        challenges.append(Challenge(scheme, params))
    return challenges


def repository_scope(repository: str, actions: Iterable[str]) -> str:
    return f"repository:{repository}:{','.join(sorted(set(actions)))}"


@dataclass
class _Token:
    value: str
    expires_at: float


class TokenCache:
    """Bearer tokens by (realm, service, scopes), thread-safe, reused until near expiry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str, frozenset[str]], _Token] = {}

    def get(self, realm: str, service: str, scopes: frozenset[str]) -> str | None:
        with self._lock:
            token = self._tokens.get((realm, service, scopes))
            if token is None or token.expires_at <= self._clock():
                return None
            return token.value

    def put(
        self, realm: str, service: str, scopes: frozenset[str], value: str, lifetime: float
    ) -> None:
        expires_at = self._clock() + max(lifetime - _EXPIRY_MARGIN_SECONDS, lifetime / 2)
        with self._lock:
            self._tokens[(realm, service, scopes)] = _Token(value, expires_at)

    def drop(self, realm: str, service: str, scopes: frozenset[str]) -> None:
        with self._lock:
            self._tokens.pop((realm, service, scopes), None)
