"""Media types of OCI and Docker schema 2 manifests, indexes, configs and layers."""

from __future__ import annotations

from enum import StrEnum


class MediaType(StrEnum):
    """The media types the executor reads and writes."""

    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


INDEX_TYPES = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST})
# What a registry client says it accepts when fetching a manifest.
ACCEPTED_MANIFEST_TYPES = (
    MediaType.OCI_INDEX,
    MediaType.DOCKER_MANIFEST_LIST,
    MediaType.OCI_MANIFEST,
    MediaType.DOCKER_MANIFEST,
)


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def layer_compression(media_type: str) -> str:
    """``gzip``, ``zstd`` or ``none`` for a layer media type."""
    if media_type.endswith(("+gzip", ".gzip")):
        return "gzip"
    if media_type.endswith("+zstd"):
        return "zstd"
    return "none"


def layer_type(manifest_type: str, compression: str) -> MediaType:
    """The layer media type matching a manifest flavour and a compression."""
    if manifest_type == MediaType.DOCKER_MANIFEST:
        if compression == "zstd":
            # Docker schema 2 has no zstd layer type; zstd needs an OCI manifest.
            raise ValueError("zstd layers need an OCI manifest")
        return MediaType.DOCKER_LAYER_GZIP if compression == "gzip" else MediaType.DOCKER_LAYER
    return {
        "gzip": MediaType.OCI_LAYER_GZIP,
        "zstd": MediaType.OCI_LAYER_ZSTD,
        "none": MediaType.OCI_LAYER,
    }[compression]
