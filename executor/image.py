"""The image a build is making: layers (local files or a base's blobs) and a config.

``BuildImage`` is also an ImageSource, so a finished build is written to any sink
(registry, OCI layout, docker-archive) by ``copy_image`` like any other image.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from executor.errors import ManifestError
from executor.oci.config import ImageConfig
from executor.oci.digest import Digest, VerifyingReader
from executor.oci.image import ImageSource, RawManifest
from executor.oci.manifest import Descriptor, Manifest
from executor.oci.mediatype import MediaType

# Docker's layer types have OCI twins with the same bytes; an OCI manifest uses those.
_TO_OCI: dict[str, str] = {
    MediaType.DOCKER_LAYER: MediaType.OCI_LAYER,
    MediaType.DOCKER_LAYER_GZIP: MediaType.OCI_LAYER_GZIP,
    MediaType.DOCKER_FOREIGN_LAYER: MediaType.OCI_LAYER_NONDIST_GZIP,
}


@dataclass(frozen=True)
class LayerRef:
    """One layer: its blob's descriptor, its diff_id, and where its bytes are."""

    descriptor: Descriptor
    diff_id: Digest
    path: Path | None = None  # a local blob file
    origin: ImageSource | None = None  # else: the image it came from

    def open(self) -> AbstractContextManager[BinaryIO]:
        if self.path is not None:
            return _open_file(self.path, self.descriptor)
        if self.origin is None:
            raise ManifestError(f"layer {self.descriptor.digest.short} has no source")
        return self.origin.open_blob(self.descriptor)


@contextmanager
def _open_file(path: Path, descriptor: Descriptor) -> Iterator[BinaryIO]:
    with path.open("rb") as f:
        yield VerifyingReader(f, descriptor.digest, descriptor.size, str(path))  # type: ignore[misc]


@dataclass(frozen=True)
class BuildImage:
    """An image as layers plus config; ``origin_repositories`` allow blob mounts on push."""

    config: ImageConfig
    layers: tuple[LayerRef, ...] = ()
    origin_registry: str | None = None
    origin_repository: str | None = None

    def with_layer(self, layer: LayerRef) -> BuildImage:
        return replace(self, layers=(*self.layers, layer))

    def with_config(self, config: ImageConfig) -> BuildImage:
        return replace(self, config=config)

    def manifest(self) -> tuple[RawManifest, bytes]:
        """The OCI manifest and config bytes for this image."""
        config_bytes = self.config.to_bytes()
        config_desc = Descriptor(MediaType.OCI_CONFIG, Digest.of(config_bytes), len(config_bytes))
        layers = tuple(
            replace(
                layer.descriptor,
                media_type=_TO_OCI.get(layer.descriptor.media_type, layer.descriptor.media_type),
            )
            for layer in self.layers
        )
        manifest = Manifest(MediaType.OCI_MANIFEST, config_desc, layers)
        return RawManifest(manifest.to_bytes(), MediaType.OCI_MANIFEST), config_bytes

    def source(self) -> BuildImageSource:
        raw, config_bytes = self.manifest()
        return BuildImageSource(raw, config_bytes, self.layers)


class BuildImageSource:
    """A built image, readable as an ImageSource."""

    def __init__(self, raw: RawManifest, config_bytes: bytes, layers: tuple[LayerRef, ...]):
        self.raw = raw
        self._config = config_bytes
        self._config_digest = Digest.of(config_bytes)
        self._layers = {layer.descriptor.digest: layer for layer in layers}

    def describe(self) -> str:
        return f"the built image {self.raw.digest.short}"

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        if digest is not None and digest != self.raw.digest:
            raise ManifestError(f"{self.describe()}: no manifest {digest}")
        return self.raw

    def open_blob(self, descriptor: Descriptor) -> AbstractContextManager[BinaryIO]:
        if descriptor.digest == self._config_digest:
            return _bytes(self._config)
        layer = self._layers.get(descriptor.digest)
        if layer is None:
            raise ManifestError(f"{self.describe()}: no blob {descriptor.digest}")
        return layer.open()


@contextmanager
def _bytes(data: bytes) -> Iterator[BinaryIO]:
    import io

    yield io.BytesIO(data)
