"""Images as a source or a sink of manifests and blobs.

Every place images live (a registry, an OCI image layout directory, a docker-archive
tarball, scratch) is a sibling module with the same two shapes: an ImageSource to
read one image (or index) from and an ImageSink to write one to. ``copy_image``
moves an image between any two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO, Protocol

from executor.errors import ManifestError
from executor.oci.config import ImageConfig
from executor.oci.digest import Digest
from executor.oci.manifest import Descriptor, Index, Manifest, detect_media_type
from executor.oci.mediatype import is_index, is_manifest

BlobOpener = Callable[[], AbstractContextManager[BinaryIO]]


@dataclass(frozen=True)
class RawManifest:
    """A manifest or index exactly as stored: its bytes are what its digest covers."""

    data: bytes
    media_type: str

    @classmethod
    def of(cls, data: bytes, declared: str | None = None) -> RawManifest:
        """Wrap manifest bytes, taking the media type from the body where it says one."""
        return cls(data, detect_media_type(data, declared))

    @cached_property
    def digest(self) -> Digest:
        return Digest.of(self.data)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.data))

    @property
    def is_index(self) -> bool:
        return is_index(self.media_type)

    def manifest(self) -> Manifest:
        if not is_manifest(self.media_type):
            raise ManifestError(
                f"{self.digest.short}: want an image manifest, got {self.media_type}"
            )
        return Manifest.parse(self.data, self.media_type)

    def index(self) -> Index:
        if not is_index(self.media_type):
            raise ManifestError(f"{self.digest.short}: want an image index, got {self.media_type}")
        return Index.parse(self.data, self.media_type)


class ImageSource(Protocol):
    """Reads one image, or one index and the images it lists."""

    def describe(self) -> str:
        """A name for messages: ``oci:/tmp/layout:app``, ``registry.example/app:1``."""
        ...

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        """The top manifest (``None``) or a manifest the top index lists, by digest."""
        ...

    def open_blob(self, descriptor: Descriptor) -> AbstractContextManager[BinaryIO]:
        """A stream of the blob's bytes. Readers verify the digest as they read."""
        ...


class ImageSink(Protocol):
    """Writes one image or index, blobs first and the top manifest last."""

    # A docker-archive cannot hold an index; copy selects one platform for it.
    accepts_index: bool

    def describe(self) -> str: ...

    def has_blob(self, descriptor: Descriptor) -> bool:
        """True if the sink already holds this blob, so copying it can be skipped."""
        ...

    def put_blob(self, descriptor: Descriptor, opener: BlobOpener) -> None:
        """Store a blob read from ``opener()``, verifying digest and size on the way."""
        ...

    def put_manifest(self, raw: RawManifest, *, top: bool) -> None:
        """Store a manifest; ``top`` marks the one the sink's tag names."""
        ...

    def commit(self) -> None:
        """Finish writing (an index file, an archive's manifest.json). Called once, last."""
        ...


ProgressFn = Callable[[Descriptor, int], None]


@dataclass(frozen=True)
class ResolvedImage:
    """One image manifest with its config, read from a source."""

    raw: RawManifest
    manifest: Manifest
    config: ImageConfig
    config_bytes: bytes


def read_config(source: ImageSource, manifest: Manifest) -> tuple[ImageConfig, bytes]:
    """Fetch, verify and parse the config blob of ``manifest``."""
    with source.open_blob(manifest.config) as stream:
        data = stream.read()
    manifest.config.digest.verify(data, f"{source.describe()}: config")
    return ImageConfig.parse(data), data


def walk_manifests(source: ImageSource, top: RawManifest) -> Iterator[RawManifest]:
    """The manifests an index lists (depth first), then the index itself; or just ``top``."""
    if top.is_index:
        for child in top.index().manifests:
            if is_index(child.media_type) or is_manifest(child.media_type):
                yield from walk_manifests(source, source.get_manifest(child.digest))
    yield top
