"""The empty image (``FROM scratch``) as an image source.

An OCI manifest with no layers and a config holding only the platform and an
empty rootfs. Both are canonical JSON with no timestamp, so the same platform
always gives the same bytes and digests.
"""

from __future__ import annotations

import contextlib
import io
from typing import BinaryIO

from executor.errors import ManifestError
from executor.oci.config import ImageConfig
from executor.oci.digest import Digest
from executor.oci.image import RawManifest
from executor.oci.manifest import Descriptor, Manifest, Platform
from executor.oci.mediatype import MediaType


class ScratchSource:
    """An image with no layers for ``platform``."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        extra = {"os.features": list(platform.os_features)} if platform.os_features else {}
        config = ImageConfig(
            architecture=platform.architecture,
            os=platform.os,
            variant=platform.variant,
            os_version=platform.os_version,
            extra=extra,
        )
        self._config = config.to_bytes()
        manifest = Manifest(
            MediaType.OCI_MANIFEST, Descriptor.of(self._config, MediaType.OCI_CONFIG), ()
        )
        self._manifest = RawManifest(manifest.to_bytes(), MediaType.OCI_MANIFEST)

    def describe(self) -> str:
        return f"scratch ({self._platform})"

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        if digest is not None and digest != self._manifest.digest:
            raise ManifestError(
                f"{self.describe()}: no manifest {digest.short}: scratch has only "
                f"{self._manifest.digest.short}"
            )
        return self._manifest

    def open_blob(self, descriptor: Descriptor) -> contextlib.AbstractContextManager[BinaryIO]:
        if descriptor.digest != Digest.of(self._config):
            raise ManifestError(
                f"{self.describe()}: no blob {descriptor.digest.short}: scratch has only its config"
            )
        return io.BytesIO(self._config)
