"""The registry client against the real CNCF registry: pull, push, mount, auth, errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pytest

from executor.errors import (
    AuthenticationError,
    DigestMismatchError,
    NotFoundError,
    RegistryError,
    RegistryUnavailableError,
)
from executor.oci.copy import copy_image
from executor.oci.digest import Digest
from executor.oci.image import read_config
from executor.oci.manifest import Descriptor
from executor.oci.mediatype import MediaType
from executor.oci.reference import ImageReference
from executor.registry import client as client_module
from executor.registry import transport as transport_module
from executor.registry.auth import Credentials, Keychain, StaticKeychain
from executor.registry.client import RegistryConnector
from executor.registry.hosts import RegistryOptions
from executor.registry.remote import RegistrySink, RegistrySource
from executor.registry.transport import RetryPolicy
from tests.support.images import PushedImage, push_layout
from tests.support.ports import free_port
from tests.support.registry import HtpasswdAuth, RegistryServer
from tests.support.token import TokenIssuer
from tests.support.web import fetch

# Tests that expect failures should not sit in backoff sleeps.
FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)


def _connector(
    keychain: Keychain | None = None, options: RegistryOptions | None = None
) -> RegistryConnector:
    return RegistryConnector(
        options or RegistryOptions(), keychain or StaticKeychain({}), retry=FAST_RETRY
    )


def _skopeo_digest(reference: str, *creds: str) -> str:
    args = ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}"]
    args += ["--creds", creds[0]] if creds else ["--no-creds"]
    out = subprocess.run(
        [*args, f"docker://{reference}"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_pull_reads_what_skopeo_pushed(busybox_image: PushedImage) -> None:
    source = RegistrySource(_connector(), ImageReference.parse(busybox_image.reference))
    raw = source.get_manifest()
    assert str(raw.digest) == busybox_image.digest
    manifest = raw.manifest()
    config, _ = read_config(source, manifest)
    assert config.config.cmd == ("sh",)
    assert len(manifest.layers) == len(config.diff_ids) == 1
    with source.open_blob(manifest.layers[0]) as stream:
        data = stream.read()
    assert Digest.of(data) == manifest.layers[0].digest


def test_copy_within_a_registry_mounts_and_keeps_the_digest(busybox_image: PushedImage) -> None:
    conn = _connector()
    src = ImageReference.parse(busybox_image.reference)
    dst = ImageReference.parse(f"{busybox_image.registry.host}/team/base:v1")
    sink = RegistrySink(conn, dst, mount_from=[src.repository])
    result = copy_image(RegistrySource(conn, src), sink)
    assert str(result.digest) == busybox_image.digest
    assert sink.mounted == 2 and sink.uploaded == 0  # config and layer, no bytes sent
    assert _skopeo_digest(str(dst)) == busybox_image.digest


def test_copy_between_registries_uploads_and_skips_what_exists(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    conn = _connector()
    with RegistryServer(tmp_path / "other") as other:
        dst = ImageReference.parse(f"{other.host}/copied/busybox:1")
        first = copy_image(
            RegistrySource(conn, ImageReference.parse(busybox_image.reference)),
            RegistrySink(conn, dst),
        )
        assert (first.blobs_copied, first.blobs_skipped) == (2, 0)
        again = copy_image(RegistrySource(conn, dst), RegistrySink(conn, dst))
        assert (again.blobs_copied, again.blobs_skipped) == (0, 2)
        assert _skopeo_digest(str(dst)) == busybox_image.digest == str(first.digest)


def test_push_blob_mounts_from_the_source_that_has_it_or_uploads(tmp_path: Path) -> None:
    data = b"a blob in one repository only"
    desc = Descriptor(MediaType.OCI_LAYER_GZIP, Digest.of(data), len(data))
    with RegistryServer(tmp_path / "registry", access_log=True) as registry:
        client = _connector().push_client(registry.host)
        assert client.push_blob("holder", desc, lambda: _bytes_opener(data)) is False
        # Mounted from the second source; the session the first one opened is deleted.
        mounted = client.push_blob(
            "taker", desc, lambda: _bytes_opener(b""), mount_from=["empty", "holder"]
        )
        assert mounted is True
        # No source holds it: the upload goes into the session the failed mount opened.
        other = b"a blob nowhere yet"
        other_desc = Descriptor(MediaType.OCI_LAYER_GZIP, Digest.of(other), len(other))
        assert (
            client.push_blob("new", other_desc, lambda: _bytes_opener(other), mount_from=["holder"])
            is False
        )
        assert fetch(f"{registry.url}/v2/new/blobs/{other_desc.digest}").body == other
        lines = [
            line.split('"')[1] for line in registry.log_path.read_text().splitlines() if '"' in line
        ]
    assert len([r for r in lines if r.startswith("DELETE /v2/taker/")]) == 1
    new_repo = [r.split(" ")[0] for r in lines if "/v2/new/" in r]
    assert new_repo[:2] == ["POST", "PUT"], new_repo  # the mount attempt, then the upload


@contextmanager
def _bytes_opener(data: bytes) -> Iterator[BinaryIO]:
    yield io.BytesIO(data)


def test_large_blobs_go_up_in_chunks(
    registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "CHUNKED_UPLOAD_THRESHOLD", 1 << 20)
    monkeypatch.setattr(client_module, "UPLOAD_CHUNK_BYTES", 256 << 10)
    data = os.urandom(3 * (1 << 20) + 123)
    desc = Descriptor(MediaType.OCI_LAYER, Digest.of(data), len(data))
    client = _connector().push_client(registry.host)
    client.upload_blob("chunky", desc, lambda: _bytes_opener(data))
    assert fetch(f"{registry.url}/v2/chunky/blobs/{desc.digest}").body == data


class _RecordingReader:
    """A source that remembers how much each read asked for."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)
        self.asked: list[int] = []

    def read(self, size: int = -1) -> bytes:
        self.asked.append(size)
        return self._stream.read(size)


@pytest.mark.parametrize(
    ("size", "threshold"),
    [(0, 1 << 20), (3 * (1 << 20) + 123, 64 << 20), (3 * (1 << 20) + 123, 1 << 20)],
    ids=["empty", "monolithic", "chunked"],
)
def test_uploads_stream_the_source_in_send_blocks(
    registry: RegistryServer, monkeypatch: pytest.MonkeyPatch, size: int, threshold: int
) -> None:
    monkeypatch.setattr(client_module, "CHUNKED_UPLOAD_THRESHOLD", threshold)
    monkeypatch.setattr(client_module, "UPLOAD_CHUNK_BYTES", 2 << 20)
    data = os.urandom(size)
    desc = Descriptor(MediaType.OCI_LAYER, Digest.of(data), len(data))
    source = _RecordingReader(data)

    @contextmanager
    def opener() -> Iterator[BinaryIO]:
        yield source  # type: ignore[misc]

    _connector().push_client(registry.host).upload_blob("streamed", desc, opener)
    assert fetch(f"{registry.url}/v2/streamed/blobs/{desc.digest}").body == data
    # Whole blocks, never a whole chunk in memory; and the end of the source was read.
    assert max(source.asked) <= client_module.SEND_BLOCK_BYTES
    assert len(source.asked) <= size // client_module.SEND_BLOCK_BYTES + 3


@pytest.mark.parametrize(
    ("actual", "error"),
    [(b"x" * 999, "ended 1 bytes short"), (b"x" * 1001, "more bytes than the descriptor")],
)
def test_a_source_of_the_wrong_length_fails_at_once(
    registry: RegistryServer, monkeypatch: pytest.MonkeyPatch, actual: bytes, error: str
) -> None:
    # A body shorter than its Content-Length would leave the registry waiting.
    monkeypatch.setattr(transport_module, "READ_TIMEOUT_SECONDS", 2)
    desc = Descriptor(MediaType.OCI_LAYER, Digest.of(b"y" * 1000), 1000)
    client = _connector().push_client(registry.host)
    with pytest.raises(DigestMismatchError, match=error):
        client.upload_blob("wrong-length", desc, lambda: _bytes_opener(actual))
    assert not client.blob_exists("wrong-length", desc)


def test_a_lying_blob_is_refused(registry: RegistryServer) -> None:
    data = b"the real bytes"
    desc = Descriptor(MediaType.OCI_LAYER, Digest.of(b"other bytes"), len(data))
    client = _connector().push_client(registry.host)
    with pytest.raises(RegistryError, match="liar: 400 DIGEST_INVALID") as info:
        client.upload_blob("liar", desc, lambda: _bytes_opener(data))
    assert not info.value.temporary
    assert not client.blob_exists("liar", desc)


def test_corrupt_blob_in_the_registry_fails_the_pull(busybox_image: PushedImage) -> None:
    source = RegistrySource(_connector(), ImageReference.parse(busybox_image.reference))
    layer = source.get_manifest().manifest().layers[0]
    hexpart = layer.digest.hex
    data_file = (
        busybox_image.registry.root
        / f"docker/registry/v2/blobs/sha256/{hexpart[:2]}/{hexpart}/data"
    )
    blob = bytearray(data_file.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    data_file.write_bytes(bytes(blob))
    with (
        pytest.raises(DigestMismatchError, match=f"want {layer.digest}"),
        source.open_blob(layer) as stream,
    ):
        while stream.read(1 << 16):
            pass


def test_unknown_tag_says_manifest_unknown(busybox_image: PushedImage) -> None:
    ref = ImageReference.parse(f"{busybox_image.registry.host}/library/busybox:nope")
    with pytest.raises(NotFoundError, match=r"busybox:nope: 404 MANIFEST_UNKNOWN") as info:
        RegistrySource(_connector(), ref).get_manifest()
    assert not info.value.temporary


def test_unreachable_registry_is_temporary() -> None:
    ref = ImageReference.parse(f"127.0.0.1:{free_port()}/app:1")
    with pytest.raises(RegistryUnavailableError, match="unreachable") as info:
        RegistrySource(_connector(), ref).get_manifest()
    assert info.value.temporary


def test_basic_auth(tmp_path: Path, busybox_layout: Path) -> None:
    with RegistryServer(tmp_path / "reg", auth=HtpasswdAuth({"alice": "wonder"})) as server:
        push_layout(busybox_layout, "latest", server.host, "library/busybox", ("alice", "wonder"))
        ref = ImageReference.parse(f"{server.host}/library/busybox:latest")
        good = StaticKeychain({server.host: Credentials("alice", "wonder")})
        raw = RegistrySource(_connector(good), ref).get_manifest()
        assert raw.media_type in (MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST)
        copy_image(
            RegistrySource(_connector(good), ref),
            RegistrySink(_connector(good), ref.with_tag("copy")),
        )
        assert _skopeo_digest(f"{server.host}/library/busybox:copy", "alice:wonder") == str(
            raw.digest
        )
        bad = StaticKeychain({server.host: Credentials("alice", "wrong")})
        with pytest.raises(AuthenticationError, match="401 UNAUTHORIZED"):
            RegistrySource(_connector(bad), ref).get_manifest()
        with pytest.raises(AuthenticationError, match="401"):
            RegistrySource(_connector(), ref).get_manifest()


def test_token_auth_reuses_tokens_until_they_expire(tmp_path: Path, busybox_layout: Path) -> None:
    with (
        TokenIssuer(tmp_path / "issuer", users={"bob": "builder"}, expires_in=3) as issuer,
        RegistryServer(tmp_path / "reg", auth=issuer) as server,
    ):
        push_layout(busybox_layout, "latest", server.host, "library/busybox", ("bob", "builder"))
        issuer.clear_requests()
        keychain = StaticKeychain({server.host: Credentials("bob", "builder")})
        conn = _connector(keychain)
        src = ImageReference.parse(f"{server.host}/library/busybox:latest")
        dst = ImageReference.parse(f"{server.host}/mirror/busybox:1")
        result = copy_image(RegistrySource(conn, src), RegistrySink(conn, dst))
        asked = [(r.user, tuple(str(s) for s in r.scopes)) for r in issuer.requests]
        # One token per scope set, however many blobs: pull on the source, push on the target.
        assert asked == [
            ("bob", ("repository:library/busybox:pull",)),
            ("bob", ("repository:mirror/busybox:pull,push",)),
        ]
        # Within the token's lifetime nothing new is asked; after it, one fresh token
        # (a 3 s token is renewed after half its life, since the margin is 10 s).
        RegistrySource(conn, src).get_manifest()
        assert len(issuer.requests) == 2
        time.sleep(1.6)
        RegistrySource(conn, src).get_manifest()
        assert len(issuer.requests) == 3
        assert _skopeo_digest(str(dst), "bob:builder") == str(result.digest)

        wrong = _connector(StaticKeychain({server.host: Credentials("bob", "nope")}))
        with pytest.raises(AuthenticationError, match="getting a token from .* as 'bob': 401"):
            RegistrySource(wrong, src).get_manifest()
        with pytest.raises(AuthenticationError, match="401"):
            RegistrySource(_connector(), src).get_manifest()


def test_mirror_serves_docker_hub_pulls(busybox_image: PushedImage) -> None:
    options = RegistryOptions.create(registry_mirrors=[busybox_image.registry.host])
    source = RegistrySource(_connector(options=options), ImageReference.parse("busybox"))
    assert str(source.get_manifest().digest) == busybox_image.digest
    assert source.client.host == busybox_image.registry.host


def test_dead_mirror_falls_back_to_the_registry(busybox_image: PushedImage) -> None:
    host = busybox_image.registry.host
    dead = f"127.0.0.1:{free_port()}"
    options = RegistryOptions.create(registry_maps=[f"{host}={dead}"])
    source = RegistrySource(
        _connector(options=options), ImageReference.parse(busybox_image.reference)
    )
    assert str(source.get_manifest().digest) == busybox_image.digest
    assert source.client.host == host


def test_config_json_credentials_are_used(
    tmp_path: Path, busybox_layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from executor.registry.auth import default_keychain

    with RegistryServer(tmp_path / "reg", auth=HtpasswdAuth({"carol": "pw"})) as server:
        push_layout(busybox_layout, "latest", server.host, "library/busybox", ("carol", "pw"))
        docker_config = tmp_path / "docker"
        docker_config.mkdir()
        (docker_config / "config.json").write_text(
            json.dumps({"auths": {server.host: {"username": "carol", "password": "pw"}}})
        )
        monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
        conn = RegistryConnector(RegistryOptions(), default_keychain(), retry=FAST_RETRY)
        ref = ImageReference.parse(f"{server.host}/library/busybox:latest")
        assert RegistrySource(conn, ref).get_manifest().digest
