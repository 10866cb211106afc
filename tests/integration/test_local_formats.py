"""Our OCI layout and docker-archive sources and sinks, checked against skopeo and umoci.

The images come from umoci (``init``/``new``/``insert``), never from our own sinks, and
every claim is checked from outside: what ``skopeo inspect`` reports, what
``umoci unpack`` unpacks, what ``skopeo copy`` writes for our sources to read.
No service is needed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import pytest

from executor.oci.archive import DockerArchiveSink, DockerArchiveSource
from executor.oci.config import ImageConfig
from executor.oci.digest import Digest
from executor.oci.image import ImageSource, RawManifest, read_config
from executor.oci.layout import OciLayoutSink, OciLayoutSource
from executor.oci.manifest import Descriptor, Index, Manifest, Platform
from executor.oci.mediatype import MediaType
from executor.oci.scratch import ScratchSource
from tests.support.commands import run_tool
from tests.unit.executor.oci.images_for_tests import copy_image, read_blob

TAG = "base"
HELLO = b"hello from the first layer\n"
DATA = bytes(range(256)) * 64


@pytest.fixture(scope="module")
def umoci_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout made by umoci: two layers (/etc/hello.txt, /opt/data.bin) as `base`."""
    files = tmp_path_factory.mktemp("files")
    (files / "hello.txt").write_bytes(HELLO)
    (files / "data.bin").write_bytes(DATA)
    root = tmp_path_factory.mktemp("umoci") / "layout"
    image = f"{root}:{TAG}"
    run_tool(["umoci", "init", "--layout", root])
    run_tool(["umoci", "new", "--image", image])
    run_tool(["umoci", "insert", "--image", image, files / "hello.txt", "/etc/hello.txt"])
    run_tool(["umoci", "insert", "--image", image, files / "data.bin", "/opt/data.bin"])
    run_tool(["umoci", "gc", "--layout", root])
    return root


def skopeo_inspect(transport_ref: str, *args: str) -> dict[str, object]:
    document: dict[str, object] = json.loads(run_tool(["skopeo", "inspect", *args, transport_ref]))
    return document


def skopeo_raw(transport_ref: str, *args: str) -> bytes:
    # --raw prints the bytes as stored; text mode would only matter for non-UTF-8.
    return run_tool(["skopeo", "inspect", "--raw", *args, transport_ref]).encode()


def skopeo_copy(source: str, destination: str) -> None:
    # Tests must not depend on the host's /etc/containers/policy.json.
    run_tool(["skopeo", "copy", "--insecure-policy", source, destination])


def config_of(source: ImageSource) -> tuple[Manifest, ImageConfig, Digest]:
    manifest = source.get_manifest().manifest()
    config, data = read_config(source, manifest)
    return manifest, config, Digest.of(data)


def test_our_layout_source_reads_umoci_layout_with_the_digest_skopeo_reports(
    umoci_layout: Path,
) -> None:
    source = OciLayoutSource(umoci_layout, TAG)
    raw = source.get_manifest()
    reported = skopeo_inspect(f"oci:{umoci_layout}:{TAG}")

    assert str(raw.digest) == reported["Digest"]
    manifest = raw.manifest()
    assert [str(la.digest) for la in manifest.layers] == reported["Layers"]
    for descriptor in (manifest.config, *manifest.layers):
        read_blob(source, descriptor)  # verified against its digest at EOF


def test_skopeo_reads_our_layout_with_the_same_manifest_config_and_layers(
    umoci_layout: Path, tmp_path: Path
) -> None:
    source = OciLayoutSource(umoci_layout, TAG)
    top = copy_image(source, OciLayoutSink(tmp_path / "ours", "copy"))
    ref = f"oci:{tmp_path / 'ours'}:copy"

    assert skopeo_raw(ref) == top.data
    reported = skopeo_inspect(ref)
    assert reported["Digest"] == str(top.digest)
    assert reported["Layers"] == [str(la.digest) for la in top.manifest().layers]
    assert Digest.of(skopeo_raw(ref, "--config")) == top.manifest().config.digest


def test_umoci_unpacks_our_layout_with_the_files_of_every_layer(
    umoci_layout: Path, tmp_path: Path
) -> None:
    copy_image(OciLayoutSource(umoci_layout, TAG), OciLayoutSink(tmp_path / "ours", "copy"))
    bundle = tmp_path / "bundle"

    run_tool(["umoci", "unpack", "--image", f"{tmp_path / 'ours'}:copy", bundle])

    assert (bundle / "rootfs" / "etc" / "hello.txt").read_bytes() == HELLO
    assert (bundle / "rootfs" / "opt" / "data.bin").read_bytes() == DATA


def test_skopeo_reads_our_index_and_each_platform_image_in_it(
    umoci_layout: Path, tmp_path: Path
) -> None:
    umoci_image = OciLayoutSource(umoci_layout, TAG)
    scratch_arm = ScratchSource(Platform("linux", "arm64", "v8"))
    sink = OciLayoutSink(tmp_path / "multi", "both")
    entries = []
    for source in (umoci_image, scratch_arm):
        manifest, config, _ = config_of(source)
        for descriptor in (manifest.config, *manifest.layers):
            sink.put_blob(descriptor, functools.partial(source.open_blob, descriptor))
        raw = source.get_manifest()
        sink.put_manifest(raw, top=False)
        entries.append(
            Descriptor(raw.media_type, raw.digest, len(raw.data), platform=config.platform)
        )
    index = RawManifest(Index(MediaType.OCI_INDEX, tuple(entries)).to_bytes(), MediaType.OCI_INDEX)
    sink.put_manifest(index, top=True)
    sink.commit()
    ref = f"oci:{tmp_path / 'multi'}:both"

    assert skopeo_raw(ref) == index.data
    # skopeo reports the digest of the index it was pointed at, and the chosen image's rest.
    arm = skopeo_inspect(ref, "--override-arch", "arm64", "--override-variant", "v8")
    assert (arm["Digest"], arm["Architecture"], arm["Layers"]) == (str(index.digest), "arm64", [])
    amd = skopeo_inspect(ref, "--override-arch", "amd64")
    umoci_layers = [str(la.digest) for la in umoci_image.get_manifest().manifest().layers]
    assert (amd["Architecture"], amd["Layers"]) == ("amd64", umoci_layers)


def test_skopeo_reads_our_docker_archive_with_the_config_digest_and_diff_ids(
    umoci_layout: Path, tmp_path: Path
) -> None:
    source = OciLayoutSource(umoci_layout, TAG)
    _, config, config_digest = config_of(source)
    archive = tmp_path / "app.tar"
    copy_image(source, DockerArchiveSink(archive, ["docker.io/library/app:1"]))

    for ref in (f"docker-archive:{archive}", f"docker-archive:{archive}:app:1"):
        reported = skopeo_inspect(ref)
        assert reported["Layers"] == [str(d) for d in config.diff_ids]
        assert Digest.of(skopeo_raw(ref, "--config")) == config_digest


def test_our_layout_source_reads_what_skopeo_copied_from_our_docker_archive(
    umoci_layout: Path, tmp_path: Path
) -> None:
    original = OciLayoutSource(umoci_layout, TAG)
    original_manifest = original.get_manifest().manifest()
    config, config_bytes = read_config(original, original_manifest)
    archive = tmp_path / "app.tar"
    copy_image(original, DockerArchiveSink(archive, ["docker.io/library/app:1"]))
    skopeo_copy(f"docker-archive:{archive}", f"oci:{tmp_path / 'back'}:from-archive")

    source = OciLayoutSource(tmp_path / "back", "from-archive")
    reported = skopeo_inspect(f"oci:{tmp_path / 'back'}:from-archive")
    assert str(source.get_manifest().digest) == reported["Digest"]
    manifest = source.get_manifest().manifest()
    back_config, back_bytes = read_config(source, manifest)
    # Converting Docker schema 2 to OCI, skopeo re-serialises the config (umoci's trailing
    # newline goes), so only its content and the diff_ids survive, not its digest.
    assert json.loads(back_bytes) == json.loads(config_bytes)
    assert back_config.diff_ids == config.diff_ids
    for layer in manifest.layers:
        read_blob(source, layer)


def test_our_archive_source_reads_the_docker_archive_skopeo_wrote(
    umoci_layout: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "skopeo.tar"
    skopeo_copy(f"oci:{umoci_layout}:{TAG}", f"docker-archive:{archive}:app:1")
    reported = skopeo_inspect(f"docker-archive:{archive}")
    skopeo_config = skopeo_raw(f"docker-archive:{archive}", "--config")

    source = DockerArchiveSource(archive, "docker.io/library/app:1")
    manifest, config, config_digest = config_of(source)
    assert config_digest == Digest.of(skopeo_config)
    assert [str(la.digest) for la in manifest.layers] == reported["Layers"]
    assert [la.digest for la in manifest.layers] == list(config.diff_ids)
    for layer in manifest.layers:
        data = read_blob(source, layer)
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == str(layer.digest)
