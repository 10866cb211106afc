import base64
import json
import os
import stat
from pathlib import Path

import pytest

from executor.errors import CredentialsError
from executor.registry.auth import (
    Credentials,
    DockerConfigKeychain,
    EcrKeychain,
    MultiKeychain,
    StaticKeychain,
)


def _write_config(directory: Path, config: dict[str, object]) -> Path:
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return path


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("key", "registry"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry.example:5000", "registry.example:5000"),
        ("https://registry.example", "registry.example"),
        ("http://registry.example/v2/", "registry.example"),
    ],
)
def test_auths_entries_match_by_host(tmp_path: Path, key: str, registry: str) -> None:
    path = _write_config(tmp_path, {"auths": {key: {"auth": _b64("alice:s3cret:with:colons")}}})
    found = DockerConfigKeychain(path).resolve(registry)
    assert found == Credentials("alice", "s3cret:with:colons")
    assert DockerConfigKeychain(path).resolve("other.example") is None


def test_identity_token_and_plain_fields(tmp_path: Path) -> None:
    path = _write_config(
        tmp_path,
        {
            "auths": {
                "a.example": {"identitytoken": "refresh-me"},
                "b.example": {"username": "bob", "password": "pw"},
            }
        },
    )
    keychain = DockerConfigKeychain(path)
    assert keychain.resolve("a.example") == Credentials(identity_token="refresh-me")
    assert keychain.resolve("b.example") == Credentials("bob", "pw")


def test_broken_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{nope")
    with pytest.raises(CredentialsError, match=r"config.json: invalid JSON at line 1"):
        DockerConfigKeychain(path).resolve("x.example")
    _write_config(tmp_path, {"auths": {"x.example": {"auth": "%%%"}}})
    with pytest.raises(CredentialsError, match="is not base64"):
        DockerConfigKeychain(path).resolve("x.example")


def _install_helper(bin_dir: Path, name: str, script: str) -> None:
    helper = bin_dir / f"docker-credential-{name}"
    helper.write_text("#!/bin/sh\n" + script)
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)


def test_cred_helpers_run_the_real_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # The helper echoes the server it was asked about, so the test sees what was passed.
    _install_helper(
        bin_dir,
        "fake",
        'read server\n[ "$1" = get ] || exit 3\n'
        'printf \'{"ServerURL":"%s","Username":"u-%s","Secret":"pw"}\' "$server" "$server"\n',
    )
    _install_helper(bin_dir, "store", 'echo "credentials not found in native keychain"; exit 1\n')
    _install_helper(bin_dir, "broken", 'echo "boom" >&2; exit 2\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    path = _write_config(
        tmp_path,
        {
            "credHelpers": {"helped.example": "fake", "bad.example": "broken"},
            "credsStore": "store",
            "auths": {"stored.example": {"auth": _b64("x:y")}},
        },
    )
    keychain = DockerConfigKeychain(path)
    assert keychain.resolve("helped.example") == Credentials("u-helped.example", "pw")
    # credsStore knows nothing: fall back to the auths entry.
    assert keychain.resolve("stored.example") == Credentials("x", "y")
    with pytest.raises(CredentialsError, match="docker-credential-broken failed.*boom"):
        keychain.resolve("bad.example")


def test_default_reads_docker_config_env(tmp_path: Path) -> None:
    keychain = DockerConfigKeychain.default({"DOCKER_CONFIG": str(tmp_path)})
    assert keychain.path == tmp_path / "config.json"


def test_ecr_hosts_use_the_token_source() -> None:
    calls: list[tuple[str, str]] = []

    def token_source(region: str, registry_id: str) -> str:
        calls.append((region, registry_id))
        return _b64("AWS:ecr-password")

    keychain = EcrKeychain(token_source)
    host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert keychain.resolve(host) == Credentials("AWS", "ecr-password")
    assert calls == [("eu-west-1", "123456789012")]
    assert keychain.resolve("registry.example") is None


def test_ecr_through_boto3_against_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        found = EcrKeychain().resolve("123456789012.dkr.ecr.us-east-1.amazonaws.com")
    assert found is not None and found.username == "AWS" and found.password


def test_multi_keychain_order() -> None:
    first = StaticKeychain({"a.example": Credentials("one", "1")})
    second = StaticKeychain(
        {"a.example": Credentials("two", "2"), "b.example": Credentials("b", "b")}
    )
    chain = MultiKeychain([first, second])
    assert chain.resolve("a.example") == Credentials("one", "1")
    assert chain.resolve("b.example") == Credentials("b", "b")
    assert chain.resolve("c.example") is None
