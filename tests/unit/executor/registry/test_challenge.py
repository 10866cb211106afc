import pytest

from executor.registry.challenge import TokenCache, parse_challenges


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"',
            [
                (
                    "bearer",
                    {"realm": "https://auth.docker.io/token", "service": "registry.docker.io"},
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
        (
            'Bearer realm="r",scope="repository:a/b:pull,push",error="insufficient_scope"',
            [
                (
                    "bearer",
                    {
                        "realm": "r",
                        "scope": "repository:a/b:pull,push",
                        "error": "insufficient_scope",
                    },
                )
            ],
        ),
        (
            'Basic realm="a\\"b", Bearer realm=x',
            [("basic", {"realm": 'a"b'}), ("bearer", {"realm": "x"})],
        ),
        ("", []),
    ],
)
def test_parse_challenges(header: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    got = [(c.scheme, c.params) for c in parse_challenges(header)]
    assert got == expected


def test_token_cache_expires_before_the_token_does() -> None:
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    scopes = frozenset({"repository:a:pull"})
    cache.put("realm", "svc", scopes, "tok", lifetime=60)
    assert cache.get("realm", "svc", scopes) == "tok"
    assert cache.get("realm", "svc", frozenset({"repository:b:pull"})) is None
    now[0] += 49
    assert cache.get("realm", "svc", scopes) == "tok"
    now[0] += 2  # past lifetime minus the 10 s margin
    assert cache.get("realm", "svc", scopes) is None
