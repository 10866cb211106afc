"""Where requests for a registry go: scheme, TLS verification, mirrors and maps.

Docker treats loopback registries as insecure (plain HTTP) by default; any other
host is HTTPS unless named with ``--insecure-registry``. Pulls may be served by
mirrors (``--registry-mirror`` for Docker Hub, ``--registry-map`` for any
registry), tried in order with the registry itself last; pushes never go to a
mirror.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from executor.oci.reference import DEFAULT_REGISTRY

# Docker Hub's API lives on another host than its name.
_HUB_API_HOST = "registry-1.docker.io"


@dataclass(frozen=True)
class Endpoint:
    """One place to send registry API requests to."""

    host: str  # host[:port] as the API sees it
    scheme: str = "https"
    verify_tls: bool = True
    mirror: bool = False  # serving pulls on behalf of another registry

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1, with or without a port."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_of(value: str) -> str:
    """``https://mirror.example/`` -> ``mirror.example``."""
    host = value.split("://", 1)[-1]
    return host.split("/", 1)[0]


@dataclass(frozen=True)
class RegistryOptions:
    """Per-host transport settings, as the CLI flags give them."""

    insecure_registries: frozenset[str] = frozenset()  # plain HTTP
    insecure_all: bool = False  # --insecure: every registry is plain HTTP
    skip_tls_verify_registries: frozenset[str] = frozenset()
    skip_tls_verify_all: bool = False
    # registry name -> hosts that serve its pulls, tried in order before it.
    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        *,
        insecure: bool = False,
        insecure_registries: Sequence[str] = (),
        skip_tls_verify: bool = False,
        skip_tls_verify_registries: Sequence[str] = (),
        registry_mirrors: Sequence[str] = (),
        registry_maps: Sequence[str] = (),
    ) -> RegistryOptions:
        """Build from flag values; ``registry_maps`` items are ``from=to[;to2]``."""
        mirrors: dict[str, list[str]] = {}
        for mirror in registry_mirrors:
            mirrors.setdefault(DEFAULT_REGISTRY, []).append(_host_of(mirror))
        for item in registry_maps:
            source, sep, targets = item.partition("=")
            if not sep or not source or not targets:
                raise ValueError(f"invalid registry map {item!r}: want FROM=TO[;TO...]")
            key = _canonical_registry(_host_of(source))
            mirrors.setdefault(key, []).extend(_host_of(t) for t in targets.split(";") if t)
        return cls(
            insecure_registries=frozenset(_host_of(h) for h in insecure_registries),
            insecure_all=insecure,
            skip_tls_verify_registries=frozenset(_host_of(h) for h in skip_tls_verify_registries),
            skip_tls_verify_all=skip_tls_verify,
            mirrors={k: tuple(v) for k, v in mirrors.items()},
        )

    def endpoint(self, registry: str, *, mirror: bool = False) -> Endpoint:
        """The endpoint for one registry host."""
        host = _HUB_API_HOST if registry == DEFAULT_REGISTRY else registry
        insecure = self.insecure_all or registry in self.insecure_registries or is_loopback(host)
        skip = self.skip_tls_verify_all or registry in self.skip_tls_verify_registries
        return Endpoint(
            host=host,
            scheme="http" if insecure else "https",
            verify_tls=not skip,
            mirror=mirror,
        )

    def pull_endpoints(self, registry: str) -> list[Endpoint]:
        """Mirrors first, in the order given, then the registry itself."""
        hosts = self.mirrors.get(_canonical_registry(registry), ())
        return [self.endpoint(h, mirror=True) for h in hosts] + [self.endpoint(registry)]

    def push_endpoint(self, registry: str) -> Endpoint:
        return self.endpoint(registry)


def _canonical_registry(name: str) -> str:
    if name in ("index.docker.io", "registry-1.docker.io", DEFAULT_REGISTRY):
        return DEFAULT_REGISTRY
    return name
