"""The test support does what it says, as seen by third-party clients (skopeo, umoci, urllib).

Every other integration test builds on these fixtures, so each claim here is checked from
outside: what skopeo reads back from the registry, what umoci unpacks, what HTTP answers.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.commands import CommandError, require_tool, run_tool
from tests.support.images import (
    APP_UID,
    BUSYBOX_PATH_ENV,
    PushedImage,
    oci_architecture,
    push_layout,
)
from tests.support.ports import free_port, port_is_open
from tests.support.registry import HtpasswdAuth, RegistryServer, RegistryStartError
from tests.support.scopes import Scope
from tests.support.token import TokenIssuer
from tests.support.web import fetch

USER, PASSWORD = "alice", "correct horse"
REPOSITORY = "team/app"


def skopeo_inspect(reference: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `skopeo inspect` on a loopback registry; the caller checks the outcome."""
    return subprocess.run(
        [require_tool("skopeo"), "inspect", "--tls-verify=false", *args, f"docker://{reference}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def inspect_json(reference: str, *args: str) -> dict[str, object]:
    result = skopeo_inspect(reference, *args)
    assert result.returncode == 0, result.stderr
    document: dict[str, object] = json.loads(result.stdout)
    return document


# -- the plain registry and the busybox image -------------------------------------------


def test_busybox_image_has_one_layer_and_runs_sh(busybox_image: PushedImage) -> None:
    assert busybox_image.reference == f"{busybox_image.registry.host}/library/busybox:latest"
    manifest = inspect_json(busybox_image.reference)
    assert manifest["Digest"] == busybox_image.digest
    assert isinstance(manifest["Layers"], list)
    assert len(manifest["Layers"]) == 1
    assert manifest["Os"] == "linux"
    assert manifest["Architecture"] == oci_architecture()
    assert manifest["Env"] == [BUSYBOX_PATH_ENV]

    config = inspect_json(busybox_image.reference, "--config")
    assert isinstance(config["config"], dict)
    assert config["config"]["Cmd"] == ["sh"]


def test_busybox_rootfs_unpacks_with_users_and_applets(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    layout, bundle = tmp_path / "pulled", tmp_path / "bundle"
    run_tool(
        [
            "skopeo", "copy", "--insecure-policy", "--src-tls-verify=false",
            f"docker://{busybox_image.reference}", f"oci:{layout}:latest",
        ]
    )  # fmt: skip
    run_tool(["umoci", "unpack", "--image", f"{layout}:latest", bundle])
    rootfs = bundle / "rootfs"

    busybox = rootfs / "bin" / "busybox"
    assert busybox.is_file()
    assert busybox.stat().st_mode & 0o111
    for applet in ("sh", "ls", "cat", "[", "wget"):
        assert os.readlink(rootfs / "bin" / applet) == "busybox"
    passwd = (rootfs / "etc" / "passwd").read_text().splitlines()
    assert [line.split(":")[0] for line in passwd] == ["root", "nobody", "app"]
    assert "app:x:1000:1000:app:/home/app:/bin/sh" in passwd
    assert "app:x:1000:" in (rootfs / "etc" / "group").read_text().splitlines()
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
    assert (rootfs / "root").is_dir()
    assert (rootfs / "home" / "app").stat().st_uid == APP_UID


def test_registry_listens_on_loopback_and_closes_its_port_on_stop(tmp_path: Path) -> None:
    server = RegistryServer(tmp_path / "registry")
    with server:
        config = json.loads(server.config_path.read_text())
        assert config["http"]["addr"] == server.host
        assert server.host.startswith("127.0.0.1:")
        assert fetch(f"{server.url}/v2/").status == 200
        assert port_is_open(server.port)
    assert not server.running
    assert not port_is_open(server.port)
    server.stop()  # a second stop is harmless


def test_registry_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    with TokenIssuer(tmp_path / "issuer") as issuer:
        issuer.cert_path.unlink()  # the registry refuses a missing rootcertbundle
        server = RegistryServer(tmp_path / "registry", auth=issuer)
        with pytest.raises(RegistryStartError, match="root certificate bundle"):
            server.start()
    assert not server.running


def test_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    assert not port_is_open(port)


def test_delete_repository_makes_the_next_push_upload_again(
    busybox_layout: Path, tmp_path: Path
) -> None:
    with RegistryServer(tmp_path / "registry", access_log=True) as server:
        push_layout(busybox_layout, "latest", server.host, REPOSITORY)
        uploads_before = server.log_path.read_text().count(f"PUT /v2/{REPOSITORY}/blobs/uploads/")
        assert uploads_before == 2  # the layer and the config

        server.delete_repository(REPOSITORY)
        gone = skopeo_inspect(f"{server.host}/{REPOSITORY}:latest")
        assert gone.returncode != 0
        assert "manifest unknown" in gone.stderr
        # The global blob store keeps what the repository linked to.
        assert any((server.root / "docker/registry/v2/blobs/sha256").iterdir())

        push_layout(busybox_layout, "latest", server.host, REPOSITORY)
        uploads_after = server.log_path.read_text().count(f"PUT /v2/{REPOSITORY}/blobs/uploads/")
        assert uploads_after == 2 * uploads_before
        with pytest.raises(FileNotFoundError):
            server.delete_repository("never/pushed")


# -- htpasswd -----------------------------------------------------------------------------


def test_htpasswd_registry_needs_the_right_credentials(
    busybox_layout: Path, tmp_path: Path
) -> None:
    auth = HtpasswdAuth({USER: PASSWORD})
    with RegistryServer(tmp_path / "registry", auth=auth) as server:
        reference = f"{server.host}/{REPOSITORY}:latest"
        with pytest.raises(CommandError, match="authentication required"):
            push_layout(busybox_layout, "latest", server.host, REPOSITORY)
        push_layout(busybox_layout, "latest", server.host, REPOSITORY, (USER, PASSWORD))

        anonymous = skopeo_inspect(reference, "--no-creds")
        assert anonymous.returncode != 0
        assert "authentication required" in anonymous.stderr
        wrong = skopeo_inspect(reference, "--creds", f"{USER}:wrong")
        assert wrong.returncode != 0
        assert "authentication required" in wrong.stderr
        layers = inspect_json(reference, "--creds", f"{USER}:{PASSWORD}")["Layers"]
        assert isinstance(layers, list)
        assert len(layers) == 1


# -- token auth ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRegistry:
    issuer: TokenIssuer
    registry: RegistryServer


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[TokenRegistry]:
    with (
        TokenIssuer(tmp_path / "issuer", users={USER: PASSWORD}) as issuer,
        RegistryServer(tmp_path / "registry", auth=issuer) as registry,
    ):
        yield TokenRegistry(issuer, registry)


def test_token_registry_challenges_anonymous_clients(token_registry: TokenRegistry) -> None:
    issuer, registry = token_registry.issuer, token_registry.registry
    response = fetch(f"{registry.url}/v2/")
    assert response.status == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="{issuer.realm}",service="{issuer.service}"'
    )


def test_token_registry_accepts_a_push_with_credentials(
    token_registry: TokenRegistry, busybox_layout: Path
) -> None:
    issuer, registry = token_registry.issuer, token_registry.registry
    digest = push_layout(busybox_layout, "latest", registry.host, REPOSITORY, (USER, PASSWORD))

    granted = [r for r in issuer.requests if r.status == 200]
    assert granted
    assert {r.user for r in granted} == {USER}
    pushes = [s for r in granted for s in r.scopes if s.name == REPOSITORY and "push" in s.actions]
    assert pushes == [Scope("repository", REPOSITORY, ("pull", "push"))]

    reference = f"{registry.host}/{REPOSITORY}:latest"
    assert inspect_json(reference, "--creds", f"{USER}:{PASSWORD}")["Digest"] == digest
    anonymous = skopeo_inspect(reference, "--no-creds")
    assert anonymous.returncode != 0
    assert "authentication required" in anonymous.stderr


def test_token_issuer_refuses_a_wrong_password(
    token_registry: TokenRegistry, busybox_layout: Path
) -> None:
    issuer, registry = token_registry.issuer, token_registry.registry
    response = fetch(
        issuer.realm,
        params={"service": issuer.service, "scope": f"repository:{REPOSITORY}:pull"},
        auth=(USER, "wrong"),
    )
    assert response.status == 401
    assert "token" not in json.loads(response.body)
    with pytest.raises(CommandError, match="invalid username/password") as refused:
        push_layout(busybox_layout, "latest", registry.host, REPOSITORY, (USER, "wrong"))
    assert f"{USER}:wrong" not in str(refused.value)  # the password stays out of errors
    assert issuer.requests
    assert {(r.user, r.status) for r in issuer.requests} == {(USER, 401)}


def test_token_issuer_signs_what_the_policy_grants(tmp_path: Path) -> None:
    with TokenIssuer(tmp_path / "issuer", users={USER: PASSWORD}, expires_in=42) as issuer:
        public_key = x509.load_pem_x509_certificate(issuer.cert_path.read_bytes()).public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)  # ES256, as the header says
        scope = f"repository:{REPOSITORY}:pull,push"

        def claims(body: dict[str, object]) -> dict[str, object]:
            assert body["token"] == body["access_token"]
            assert body["expires_in"] == 42
            assert isinstance(body["token"], str)
            decoded: dict[str, object] = jwt.decode(
                body["token"],
                public_key,
                algorithms=["ES256"],
                audience=issuer.service,
                issuer=issuer.issuer,
            )
            return decoded

        anonymous = fetch(issuer.realm, params={"scope": scope})
        assert anonymous.status == 200
        assert claims(json.loads(anonymous.body))["access"] == [
            {"type": "repository", "name": REPOSITORY, "actions": []}
        ]

        password_grant = fetch(
            issuer.realm,
            form={
                "grant_type": "password",
                "username": USER,
                "password": PASSWORD,
                "service": issuer.service,
                "scope": scope,
            },
        )
        assert password_grant.status == 200
        granted = claims(json.loads(password_grant.body))
        assert granted["sub"] == USER
        assert granted["access"] == [
            {"type": "repository", "name": REPOSITORY, "actions": ["pull", "push"]}
        ]
        expires, issued = granted["exp"], granted["iat"]
        assert isinstance(expires, int)
        assert isinstance(issued, int)
        assert expires - issued == 42
        assert granted["nbf"] == issued
        assert [(r.method, r.user) for r in issuer.requests] == [("GET", None), ("POST", USER)]


def test_token_registry_with_anonymous_pull(busybox_layout: Path, tmp_path: Path) -> None:
    with (
        TokenIssuer(tmp_path / "issuer", users={USER: PASSWORD}, anonymous_pull=True) as issuer,
        RegistryServer(tmp_path / "registry", auth=issuer) as registry,
    ):
        with pytest.raises(CommandError):
            push_layout(busybox_layout, "latest", registry.host, REPOSITORY)
        push_layout(busybox_layout, "latest", registry.host, REPOSITORY, (USER, PASSWORD))
        layers = inspect_json(f"{registry.host}/{REPOSITORY}:latest", "--no-creds")["Layers"]
        assert isinstance(layers, list)
        assert len(layers) == 1
