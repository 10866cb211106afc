"""Small random images for the image source and sink tests, made with plain Python.

Layers are tarballs made with the stdlib ``tarfile`` and ``gzip`` (zstd with the
``zstandard`` package), configs and manifests are JSON written here, and layouts
and archives on disk are written with ``json``, ``tarfile`` and ``pathlib``: none of
the sinks under test is used to fabricate what the sources are tested on.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import random
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from executor.errors import ManifestError
from executor.oci.digest import CHUNK_SIZE, Digest, VerifyingReader
from executor.oci.image import BlobOpener, ImageSink, ImageSource, RawManifest
from executor.oci.manifest import Descriptor, Platform
from executor.oci.mediatype import MediaType

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")
_LAYER_TYPES = {
    "gzip": MediaType.OCI_LAYER_GZIP,
    "zstd": MediaType.OCI_LAYER_ZSTD,
    "none": MediaType.OCI_LAYER,
}


def _json(obj: object) -> bytes:
    # Not canonical on purpose: key order and spacing as another tool might write them,
    # so a round trip that re-serialised anything would change the digest.
    return json.dumps(obj, indent=1).encode()


@dataclass(frozen=True)
class FakeLayer:
    """A layer: its files, its tar, and the blob as pushed (maybe compressed)."""

    files: Mapping[str, bytes]
    tar: bytes
    blob: bytes
    media_type: str

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor.of(self.blob, self.media_type)

    @property
    def diff_id(self) -> Digest:
        return Digest.of(self.tar)


@dataclass(frozen=True)
class FakeImage:
    """An image manifest with its config and layers, all as bytes."""

    manifest: RawManifest
    config: bytes
    layers: tuple[FakeLayer, ...]
    platform: Platform

    @property
    def config_descriptor(self) -> Descriptor:
        return self.manifest.manifest().config

    @property
    def blobs(self) -> dict[Digest, tuple[Descriptor, bytes]]:
        """Every blob (config, layers) by digest, with the descriptor the manifest gives."""
        out = {self.config_descriptor.digest: (self.config_descriptor, self.config)}
        for layer in self.layers:
            out[layer.descriptor.digest] = (layer.descriptor, layer.blob)
        return out


def make_tar(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed tar of regular files, in the given order, with fixed metadata."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def make_layer(rng: random.Random, compression: str = "gzip", files: int = 3) -> FakeLayer:
    """A layer of ``files`` random files under a random directory."""
    top = f"dir{rng.randrange(1 << 30)}"
    contents = {f"{top}/file{i}.bin": rng.randbytes(rng.randrange(1, 3000)) for i in range(files)}
    tar = make_tar(contents)
    return FakeLayer(contents, tar, compress(tar, compression), _LAYER_TYPES[compression])


def make_image(
    seed: int = 0,
    *,
    platform: Platform = AMD64,
    layers: int = 2,
    compression: str = "gzip",
    docker: bool = False,
) -> FakeImage:
    """A random image: ``layers`` layers, a config listing their diff_ids, a manifest.

    ``docker`` makes a Docker schema 2 manifest with Docker media types instead of OCI.
    """
    rng = random.Random(seed)
    fake_layers = tuple(make_layer(rng, compression) for _ in range(layers))
    if docker:
        docker_types = {"gzip": MediaType.DOCKER_LAYER_GZIP, "none": MediaType.DOCKER_LAYER}
        fake_layers = tuple(
            FakeLayer(la.files, la.tar, la.blob, docker_types[compression]) for la in fake_layers
        )
    config_obj: dict[str, object] = {
        "created": "2024-01-02T03:04:05Z",
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Env": [f"SEED={seed}"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [str(la.diff_id) for la in fake_layers]},
        "history": [{"created_by": f"layer {i}"} for i in range(layers)],
    }
    if platform.variant:
        config_obj["variant"] = platform.variant
    config = _json(config_obj)
    manifest_type = MediaType.DOCKER_MANIFEST if docker else MediaType.OCI_MANIFEST
    config_type = MediaType.DOCKER_CONFIG if docker else MediaType.OCI_CONFIG
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": Descriptor.of(config, config_type).to_json(),
        "layers": [la.descriptor.to_json() for la in fake_layers],
    }
    raw = RawManifest(_json(manifest), manifest_type)
    return FakeImage(raw, config, fake_layers, platform)


def make_index(images: Sequence[FakeImage]) -> RawManifest:
    """An OCI image index listing ``images`` with their platforms."""
    entries = []
    for image in images:
        entry = image.manifest.descriptor.to_json()
        entry["platform"] = image.platform.to_json()
        entries.append(entry)
    index = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": entries}
    return RawManifest(_json(index), MediaType.OCI_INDEX)


def opener(data: bytes) -> BlobOpener:
    """A BlobOpener over bytes in memory."""
    return lambda: io.BytesIO(data)


def read_blob(source: ImageSource, descriptor: Descriptor) -> bytes:
    """The whole blob, read in chunks until EOF so the source's verification runs."""
    with source.open_blob(descriptor) as stream:
        return b"".join(iter(lambda: stream.read(CHUNK_SIZE), b""))


def put_image(sink: ImageSink, image: FakeImage, *, top: bool = True) -> None:
    """Blobs first, then the manifest; no commit."""
    for descriptor, data in image.blobs.values():
        sink.put_blob(descriptor, opener(data))
    sink.put_manifest(image.manifest, top=top)


def write_image(sink: ImageSink, image: FakeImage) -> None:
    """Put one image into ``sink`` as its top manifest and commit."""
    put_image(sink, image)
    sink.commit()


class MemorySource:
    """A registry-like ImageSource holding manifests and blobs in memory."""

    def __init__(self, top: RawManifest, images: Sequence[FakeImage]) -> None:
        self._top = top
        self._manifests = {image.manifest.digest: image.manifest for image in images}
        self._blobs = {d: data for image in images for d, (_, data) in image.blobs.items()}

    def describe(self) -> str:
        return "memory"

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        if digest is None or digest == self._top.digest:
            return self._top
        try:
            return self._manifests[digest]
        except KeyError:
            raise ManifestError(f"memory: no manifest {digest}") from None

    @contextlib.contextmanager
    def _open(self, descriptor: Descriptor) -> Iterator[BinaryIO]:
        reader = VerifyingReader(
            io.BytesIO(self._blobs[descriptor.digest]), descriptor.digest, descriptor.size, "blob"
        )
        yield reader  # type: ignore[misc]

    def open_blob(self, descriptor: Descriptor) -> contextlib.AbstractContextManager[BinaryIO]:
        return self._open(descriptor)


def copy_image(source: ImageSource, sink: ImageSink) -> RawManifest:
    """A minimal copy (the top manifest, its children, their blobs) for driving sinks."""
    top = source.get_manifest()
    manifests = (
        [source.get_manifest(d.digest) for d in top.index().manifests] if top.is_index else []
    )
    for raw in [*manifests, top]:
        if raw.is_index:
            continue
        manifest = raw.manifest()
        for descriptor in (manifest.config, *manifest.layers):
            if not sink.has_blob(descriptor):
                sink.put_blob(descriptor, functools.partial(source.open_blob, descriptor))
    for raw in manifests:
        sink.put_manifest(raw, top=False)
    sink.put_manifest(top, top=True)
    sink.commit()
    return top


# --- layouts and archives written by hand ----------------------------------------------


def write_blob(root: Path, data: bytes) -> Digest:
    digest = Digest.of(data)
    path = root / "blobs" / digest.algorithm / digest.hex
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def write_layout(
    root: Path,
    entries: Sequence[tuple[str | None, RawManifest]],
    images: Sequence[FakeImage] = (),
) -> None:
    """An OCI layout with ``images``' blobs and manifests, and index.json listing ``entries``.

    Each entry is (ref name or None, top manifest); an index's children must be in ``images``.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    for image in images:
        write_blob(root, image.manifest.data)
        for _, data in image.blobs.values():
            write_blob(root, data)
    listed = []
    for name, raw in entries:
        write_blob(root, raw.data)
        entry = raw.descriptor.to_json()
        if name is not None:
            entry["annotations"] = {"org.opencontainers.image.ref.name": name}
        listed.append(entry)
    index = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": listed}
    (root / "index.json").write_bytes(_json(index))


def write_tar(path: Path, members: Sequence[tuple[str, bytes]]) -> None:
    """A plain tar of regular files named exactly as given (no checks: tests make bad ones)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_docker_archive(
    path: Path,
    images: Sequence[tuple[FakeImage, Sequence[str] | None]],
    *,
    extra: Sequence[tuple[str, bytes]] = (),
) -> None:
    """A docker-archive in the old ``docker save`` naming (``<id>/layer.tar``, ``<hex>.json``).

    Each image comes with its RepoTags (None for untagged); layers go in as their
    uncompressed tars, as Docker writes them. ``extra`` members are appended as given.
    """
    entries: list[dict[str, object]] = []
    members: list[tuple[str, bytes]] = []
    for image, repo_tags in images:
        config_name = f"{image.config_descriptor.digest.hex}.json"
        layer_names = [f"{la.diff_id.hex[:16]}/layer.tar" for la in image.layers]
        entries.append({"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names})
        members.append((config_name, image.config))
        members += [(name, la.tar) for name, la in zip(layer_names, image.layers, strict=True)]
    write_tar(path, [("manifest.json", _json(entries)), *members, *extra])
