"""`farm image` as a user runs it: a real process, real registries, checked by skopeo and umoci."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.support.images import PushedImage
from tests.support.ports import free_port
from tests.support.registry import HtpasswdAuth, RegistryServer


def farm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "farm", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def ok(*args: str) -> str:
    result = farm(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def skopeo_inspect(location: str) -> dict[str, object]:
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--no-creds", location]
        if location.startswith("docker://")
        else ["skopeo", "inspect", location],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_copies_keep_the_digest_and_third_party_clients_agree(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    source = busybox_image.reference
    registry = busybox_image.registry.host
    inspected = json.loads(ok("image", "inspect", "--json", source))
    assert inspected["digest"] == busybox_image.digest
    diff_layers = inspected["layers"]

    # registry -> registry
    ok("image", "copy", source, f"docker://{registry}/copies/busybox:1")
    assert skopeo_inspect(f"docker://{registry}/copies/busybox:1")["Digest"] == busybox_image.digest

    # registry -> OCI layout, read by skopeo and unpacked by umoci
    layout = tmp_path / "layout"
    out = ok("image", "copy", "--digest-file", str(tmp_path / "d"), source, f"oci:{layout}:v1")
    assert busybox_image.digest in out
    assert (tmp_path / "d").read_text() == busybox_image.digest
    assert skopeo_inspect(f"oci:{layout}:v1")["Digest"] == busybox_image.digest
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:v1", str(bundle)],
        check=True,
        capture_output=True,
    )
    assert os.readlink(bundle / "rootfs/bin/sh") == "busybox"
    assert "app:x:1000:1000" in (bundle / "rootfs/etc/passwd").read_text()

    # registry -> docker-archive: the image ID (config digest) and diff_ids survive
    archive = tmp_path / "image.tar"
    ok("image", "copy", source, f"docker-archive:{archive}:example.com/team/app:2")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["example.com/team/app:2"]
    archived = skopeo_inspect(f"docker-archive:{archive}")
    assert archived["Layers"] and len(archived["Layers"]) == len(diff_layers)  # type: ignore[arg-type]
    config_digest = inspected["config"]["digest"]
    archived_inspect = json.loads(ok("image", "inspect", "--json", f"docker-archive:{archive}"))
    assert archived_inspect["config"]["digest"] == config_digest

    # and back: OCI layout -> a new registry repository keeps the digest
    ok("image", "copy", f"oci:{layout}:v1", f"{registry}/back/busybox:1")
    assert skopeo_inspect(f"docker://{registry}/back/busybox:1")["Digest"] == busybox_image.digest


def test_progress_lines_for_large_blobs(registry: RegistryServer, tmp_path: Path) -> None:
    layout, payload = tmp_path / "big", tmp_path / "payload"
    payload.mkdir()
    (payload / "random.bin").write_bytes(os.urandom(12 << 20))  # incompressible: a 12 MiB blob
    for cmd in (
        ["umoci", "init", "--layout", str(layout)],
        ["umoci", "new", "--image", f"{layout}:big"],
        ["umoci", "insert", "--image", f"{layout}:big", str(payload), "/data"],
    ):
        subprocess.run(cmd, check=True, capture_output=True)
    result = farm("image", "copy", f"oci:{layout}:big", f"{registry.host}/big:1")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("copying sha256:")]
    assert lines and lines[-1].endswith("/ 12.0 MiB (100%)")
    quiet = farm("image", "copy", "-q", f"oci:{layout}:big", f"oci:{tmp_path / 'copy'}:big")
    assert quiet.returncode == 0 and "copying" not in quiet.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["image", "inspect", "Not A Ref"],
            "invalid image reference 'Not A Ref': it contains white space",
        ),
        (["image", "inspect", "ftp://x/y"], "unknown transport 'ftp'"),
        (["image", "inspect", "oci:/nonexistent/layout:v1"], "/nonexistent/layout"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = farm(*args)
    assert result.returncode == 1
    assert result.stderr.startswith("farm: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def _one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("farm: error: ")
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_registry_errors_are_one_line(busybox_image: PushedImage, tmp_path: Path) -> None:
    registry = busybox_image.registry
    _one_line_error(
        farm("image", "inspect", f"{registry.host}/library/busybox:missing"),
        "busybox:missing: 404 MANIFEST_UNKNOWN",
    )
    _one_line_error(farm("image", "inspect", f"127.0.0.1:{free_port()}/app:1"), "unreachable")

    # A blob whose bytes were changed in the registry's storage.
    inspected = json.loads(ok("image", "inspect", "--json", busybox_image.reference))
    layer = inspected["layers"][0]["digest"].split(":")[1]
    data = registry.root / f"docker/registry/v2/blobs/sha256/{layer[:2]}/{layer}/data"
    blob = bytearray(data.read_bytes())
    blob[100] ^= 0xFF
    data.write_bytes(bytes(blob))
    _one_line_error(
        farm("image", "copy", busybox_image.reference, f"oci:{tmp_path / 'out'}:x"),
        "digest mismatch",
        f"want sha256:{layer}",
    )
    assert not list((tmp_path / "out" / "blobs" / "sha256").glob("*tmp*"))


def test_wrong_credentials_are_one_line(tmp_path: Path, busybox_layout: Path) -> None:
    from tests.support.images import push_layout

    with RegistryServer(tmp_path / "reg", auth=HtpasswdAuth({"dora": "explorer"})) as server:
        push_layout(busybox_layout, "latest", server.host, "library/busybox", ("dora", "explorer"))
        ref = f"{server.host}/library/busybox:latest"
        env = {"DOCKER_CONFIG": str(tmp_path / "empty-docker-config")}
        result = farm("image", "inspect", "--creds", "dora:wrong", ref, env=env)
        _one_line_error(result, "401 UNAUTHORIZED")
        assert "wrong" not in result.stderr
        good = farm("image", "inspect", "--json", "--creds", "dora:explorer", ref, env=env)
        assert good.returncode == 0 and json.loads(good.stdout)["config"]["cmd"] == ["sh"]
