"""Base images: pulling one from a registry, making scratch, unpacking layers."""

from __future__ import annotations

from pathlib import Path

from executor.errors import DigestMismatchError, ManifestError
from executor.fs.extract import extract_layer
from executor.image import BuildImage, LayerRef
from executor.oci.config import ImageConfig
from executor.oci.copy import select_top
from executor.oci.image import read_config
from executor.oci.manifest import Platform
from executor.oci.mediatype import layer_compression
from executor.oci.reference import ImageReference
from executor.registry.client import RegistryConnector
from executor.registry.remote import RegistrySource
from executor.report import BuildReporter


def scratch(platform: Platform) -> BuildImage:
    """The empty image: no layers, no config beyond the platform."""
    return BuildImage(
        ImageConfig(architecture=platform.architecture, os=platform.os, variant=platform.variant)
    )


def pull(connector: RegistryConnector, reference: ImageReference, platform: Platform) -> BuildImage:
    """Read a base image's manifest and config; its layers stay in the registry until used."""
    source = RegistrySource(connector, reference)
    raw = select_top(source, platform=platform, accepts_index=False)
    manifest = raw.manifest()
    config, _ = read_config(source, manifest)
    if len(manifest.layers) != len(config.diff_ids):
        raise ManifestError(
            f"{reference}: {len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids"
        )
    layers = tuple(
        LayerRef(descriptor, diff_id, origin=source)
        for descriptor, diff_id in zip(manifest.layers, config.diff_ids, strict=True)
    )
    return BuildImage(
        config,
        layers,
        origin_registry=reference.registry,
        origin_repository=reference.repository,
    )


def unpack(image: BuildImage, rootfs: Path, reporter: BuildReporter) -> int:
    """Apply every layer of ``image`` onto ``rootfs`` in order; return bytes unpacked.

    Layers read from a registry (not a local file) count as ``pulled`` bytes.
    """
    rootfs.mkdir(parents=True, exist_ok=True)
    total = 0
    for layer in image.layers:
        if layer.path is None:
            reporter.count("pulled", layer.descriptor.size)
        compression = layer_compression(layer.descriptor.media_type)
        with layer.open() as stream:
            result = extract_layer(stream, compression, rootfs)
        if result.diff_id != layer.diff_id:
            raise DigestMismatchError(
                f"layer {layer.descriptor.digest.short}: diff_id {result.diff_id} "
                f"is not the {layer.diff_id} the config promises"
            )
        total += result.size
    return total
