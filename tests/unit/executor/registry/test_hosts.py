import pytest

from executor.registry.hosts import RegistryOptions, is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.8.9.10", True),
        ("[::1]:5000", True),
        ("10.0.0.1:5000", False),
        ("registry.example", False),
        ("localhost.example:5000", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_schemes_follow_docker_defaults_and_flags() -> None:
    options = RegistryOptions.create(
        insecure_registries=["http://plain.example:5000"],
        skip_tls_verify_registries=["self.example"],
    )
    assert options.endpoint("127.0.0.1:5000").base_url == "http://127.0.0.1:5000"
    assert options.endpoint("plain.example:5000").scheme == "http"
    assert options.endpoint("secure.example").base_url == "https://secure.example"
    assert options.endpoint("secure.example").verify_tls is True
    assert options.endpoint("self.example").verify_tls is False
    assert options.endpoint("docker.io").host == "registry-1.docker.io"
    assert RegistryOptions.create(insecure=True).endpoint("any.example").scheme == "http"


def test_mirrors_come_first_and_pushes_skip_them() -> None:
    options = RegistryOptions.create(
        registry_mirrors=["https://mirror-a.example/", "mirror-b.example"],
        registry_maps=["index.docker.io=extra.example", "quay.io=q1.example;q2.example"],
    )
    hosts = [e.host for e in options.pull_endpoints("docker.io")]
    assert hosts == [
        "mirror-a.example",
        "mirror-b.example",
        "extra.example",
        "registry-1.docker.io",
    ]
    assert [e.mirror for e in options.pull_endpoints("quay.io")] == [True, True, False]
    assert options.push_endpoint("docker.io").host == "registry-1.docker.io"
    assert [e.host for e in options.pull_endpoints("gcr.io")] == ["gcr.io"]


def test_bad_registry_map_is_refused() -> None:
    with pytest.raises(ValueError, match="FROM=TO"):
        RegistryOptions.create(registry_maps=["nonsense"])
