"""Which proxy a request goes through, as ``HTTP(S)_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` say.

Read like requests (through urllib) reads them, without importing urllib.request:
lower-case names win over upper-case ones; ``NO_PROXY`` is a comma-separated list
of ``*``, domains (``example.com`` and ``.example.com`` cover its subdomains too),
addresses, CIDR ranges and any of those with ``:port``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from executor.errors import NetworkError
from executor.http.message import basic_auth

Origin = tuple[str, str, int]  # scheme, host, port


@dataclass(frozen=True)
class Proxy:
    """A plain-HTTP proxy; HTTPS goes through it in a CONNECT tunnel."""

    host: str
    port: int
    authorization: str | None = None  # the Proxy-Authorization value, from the URL's user

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """``http://user:password@host:port``; a bare ``host:port`` means http."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise NetworkError(
                f"proxy {url!r}: only http:// proxies are supported", temporary=False
            )
        auth = None
        if parts.username is not None:
            auth = basic_auth(unquote(parts.username), unquote(parts.password or ""))
        return cls(parts.hostname, parts.port or 80, auth)

    def __str__(self) -> str:
        return f"proxy {netloc(self.host, self.port)}"


@dataclass(frozen=True)
class Proxies:
    """The proxy for each scheme and the hosts that bypass them."""

    http: str | None = None  # the proxy URLs as given, parsed when a request needs one
    https: str | None = None
    no_proxy: tuple[str, ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Proxies:
        """Read ``http_proxy``, ``https_proxy``, ``all_proxy`` and ``no_proxy``.

        ``HTTP_PROXY`` is ignored under CGI (a client's ``Proxy:`` header sets it).
        """

        def get(name: str) -> str | None:
            value = environ.get(name)
            if value is None and not (name == "http_proxy" and "REQUEST_METHOD" in environ):
                value = environ.get(name.upper())
            return value or None

        every = get("all_proxy")
        http_url, https_url = get("http_proxy") or every, get("https_proxy") or every
        return cls(
            http=http_url,
            https=https_url,
            no_proxy=tuple(e.strip() for e in (get("no_proxy") or "").split(",") if e.strip()),
        )

    def for_origin(self, origin: Origin) -> Proxy | None:
        """The proxy for this origin, or None to connect directly.

        A proxy URL is parsed only here, for a request that would use it: one this
        client cannot use (``socks5://``, ``https://``) fails only those requests, not
        the ones ``NO_PROXY`` sends direct or that go by the other scheme.
        """
        scheme, host, port = origin
        url = self.https if scheme == "https" else self.http
        if url is None or any(_bypasses(entry, host, port) for entry in self.no_proxy):
            return None
        return Proxy.parse(url)


def _bypasses(entry: str, host: str, port: int) -> bool:
    """Whether one ``NO_PROXY`` entry names this host and port."""
    name, want_port = entry.lower(), None
    if name.startswith("["):  # [::1] or [::1]:5000
        name, _, rest = name[1:].partition("]")
        want_port = rest[1:] or None
    elif name.count(":") == 1:  # host:port (a bare IPv6 address has more colons)
        name, want_port = name.split(":")
    if want_port is not None and want_port != str(port):
        return False
    host = host.lower()
    if name in ("*", host):
        return True
    if "/" in name:
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False)
        except ValueError:
            return False
    domain = name.lstrip("*").lstrip(".")  # .example.com and *.example.com: the same
    return host == domain or host.endswith(f".{domain}")


def netloc(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
