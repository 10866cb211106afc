"""Proxy settings read from the environment, as requests reads them."""

from __future__ import annotations

import pytest

from executor.errors import NetworkError
from executor.http import Proxies, Proxy, basic_auth

REGISTRY = ("http", "registry.example", 5000)
SECURE = ("https", "registry.example", 443)


@pytest.mark.parametrize(
    ("environ", "http", "https"),
    [
        ({}, None, None),
        ({"HTTP_PROXY": "http://p:3128"}, Proxy("p", 3128), None),
        ({"https_proxy": "p:8080"}, None, Proxy("p", 8080)),
        ({"ALL_PROXY": "http://all:1"}, Proxy("all", 1), Proxy("all", 1)),
        (
            {"ALL_PROXY": "http://all:1", "HTTPS_PROXY": "http://s:2"},
            Proxy("all", 1),
            Proxy("s", 2),
        ),
        ({"http_proxy": "http://lower:1", "HTTP_PROXY": "http://upper:2"}, Proxy("lower", 1), None),
        ({"http_proxy": "", "HTTP_PROXY": "http://upper:2"}, None, None),
        ({"HTTP_PROXY": "http://cgi:1", "REQUEST_METHOD": "GET"}, None, None),
        ({"http_proxy": "http://p"}, Proxy("p", 80), None),
    ],
)
def test_proxies_come_from_the_environment(
    environ: dict[str, str], http: Proxy | None, https: Proxy | None
) -> None:
    proxies = Proxies.from_environ(environ)
    found = (proxies.for_origin(("http", "h", 80)), proxies.for_origin(("https", "h", 443)))
    assert found == (http, https)


def test_credentials_in_the_proxy_url_become_proxy_authorization() -> None:
    proxy = Proxy.parse("http://al%40ce:p%3Ass@proxy.example:3128")
    assert proxy == Proxy("proxy.example", 3128, basic_auth("al@ce", "p:ss"))


def test_only_plain_http_proxies_are_taken() -> None:
    proxies = Proxies.from_environ({"HTTPS_PROXY": "https://proxy.example:3128"})
    with pytest.raises(NetworkError, match="only http:// proxies") as info:
        proxies.for_origin(("https", "registry.example", 443))
    assert not info.value.temporary


def test_a_proxy_this_client_cannot_use_fails_only_the_requests_that_would_use_it() -> None:
    proxies = Proxies.from_environ(
        {"all_proxy": "socks5://127.0.0.1:1080", "no_proxy": "localhost,127.0.0.1"}
    )
    assert proxies.for_origin(("http", "127.0.0.1", 5000)) is None
    with pytest.raises(NetworkError, match="socks5"):
        proxies.for_origin(("https", "registry.example", 443))


@pytest.mark.parametrize(
    ("no_proxy", "origin", "bypassed"),
    [
        ("", REGISTRY, False),
        ("*", REGISTRY, True),
        ("registry.example", REGISTRY, True),
        ("REGISTRY.example", REGISTRY, True),
        ("example", REGISTRY, True),
        (".example", REGISTRY, True),
        ("*.example", REGISTRY, True),
        ("ample", REGISTRY, False),
        ("other.example", REGISTRY, False),
        ("sub.registry.example", REGISTRY, False),
        ("registry.example:5000", REGISTRY, True),
        ("registry.example:5001", REGISTRY, False),
        ("other, registry.example ", REGISTRY, True),
        ("registry.example", SECURE, True),
        ("127.0.0.1", ("http", "127.0.0.1", 5000), True),
        ("127.0.0.1:5000", ("http", "127.0.0.1", 5000), True),
        ("127.0.0.1", ("http", "127.0.0.2", 5000), False),
        ("127.0.0.0/8", ("http", "127.0.0.2", 5000), True),
        ("10.0.0.0/8", ("http", "127.0.0.2", 5000), False),
        ("10.0.0.0/8", REGISTRY, False),
        ("::1", ("http", "::1", 5000), True),
        ("[::1]:5000", ("http", "::1", 5000), True),
        ("[::1]:5001", ("http", "::1", 5000), False),
        ("localhost", ("http", "localhost", 5000), True),
    ],
)
def test_no_proxy_names_hosts_that_go_direct(
    no_proxy: str, origin: tuple[str, str, int], bypassed: bool
) -> None:
    proxies = Proxies.from_environ(
        {"HTTP_PROXY": "http://p:1", "HTTPS_PROXY": "http://p:1", "NO_PROXY": no_proxy}
    )
    assert (proxies.for_origin(origin) is None) == bypassed


def test_lower_case_no_proxy_wins() -> None:
    proxies = Proxies.from_environ(
        {"HTTP_PROXY": "http://p:1", "no_proxy": "other.example", "NO_PROXY": "*"}
    )
    assert proxies.for_origin(REGISTRY) == Proxy("p", 1)
