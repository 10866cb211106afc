"""A registry repository as an ImageSource (pulls, through mirrors) and an ImageSink (pushes)."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from typing import BinaryIO

from executor.errors import DigestMismatchError, RegistryError
from executor.oci.digest import Digest
from executor.oci.image import BlobOpener, RawManifest
from executor.oci.manifest import Descriptor
from executor.oci.reference import ImageReference
from executor.registry.client import RegistryClient, RegistryConnector


class RegistrySource:
    """Reads an image from a registry, trying its mirrors first.

    The first endpoint that serves the top manifest serves everything after it,
    so the manifest and its blobs come from the same place.
    """

    def __init__(self, connector: RegistryConnector, reference: ImageReference) -> None:
        self.reference = reference
        self._clients = connector.pull_clients(reference.registry)
        self._chosen: RegistryClient | None = None

    def describe(self) -> str:
        return str(self.reference)

    @property
    def client(self) -> RegistryClient:
        """The endpoint serving this image (the registry itself until a manifest was read)."""
        return self._chosen or self._clients[-1]

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        repository = self.reference.repository
        if digest is not None:
            return self.client.get_manifest(repository, str(digest))
        identifier = self.reference.identifier
        failures: list[str] = []
        for client in self._clients:
            try:
                raw = client.get_manifest(repository, identifier)
            except RegistryError as exc:
                if client is self._clients[-1]:
                    if failures:
                        raise type(exc)(
                            f"{exc} (mirrors tried first: {'; '.join(failures)})",
                            status=exc.status,
                            codes=exc.codes,
                        ) from exc
                    raise
                failures.append(f"{client.host}: {exc}")
                continue
            self._chosen = client
            return raw
        raise AssertionError("unreachable: the registry itself is always the last client")

    def open_blob(self, descriptor: Descriptor) -> AbstractContextManager[BinaryIO]:
        return self.client.open_blob(self.reference.repository, descriptor)


class RegistrySink:
    """Writes an image to a registry repository under the reference's tag.

    ``mount_from`` names other repositories of the same registry that may hold
    the blobs already (the base image's, a source being copied): those are
    linked by cross-repository mount instead of uploaded. ``present``: blobs known
    to be in the repository already (this build put them there), not asked about.
    """

    accepts_index = True

    def __init__(
        self,
        connector: RegistryConnector,
        reference: ImageReference,
        *,
        mount_from: Sequence[str] = (),
        present: Collection[Digest] = (),
    ) -> None:
        self.reference = reference
        self.client = connector.push_client(reference.registry)
        self._mount_from = tuple(r for r in mount_from if r != reference.repository)
        self._present = frozenset(present)
        self.pushed: Digest | None = None
        # Counts, kept under a lock: copy_image puts blobs from several threads.
        self._counts_lock = threading.Lock()
        self.mounted = 0
        self.uploaded = 0
        self.uploaded_bytes = 0

    def describe(self) -> str:
        return str(self.reference)

    def has_blob(self, descriptor: Descriptor) -> bool:
        if descriptor.digest in self._present:
            return True
        return self.client.blob_exists(self.reference.repository, descriptor, for_push=True)

    def put_blob(self, descriptor: Descriptor, opener: BlobOpener) -> None:
        mounted = self.client.push_blob(
            self.reference.repository, descriptor, opener, mount_from=self._mount_from
        )
        with self._counts_lock:
            if mounted:
                self.mounted += 1
            else:
                self.uploaded += 1
                self.uploaded_bytes += descriptor.size

    def put_manifest(self, raw: RawManifest, *, top: bool) -> None:
        ref = self.reference
        if top and ref.digest is not None and ref.digest != raw.digest:
            raise DigestMismatchError(
                f"pushing to {ref}: the image's digest is {raw.digest}, not the one named"
            )
        target = ref.tag if top and ref.tag else str(raw.digest)
        self.client.put_manifest(ref.repository, target, raw)
        if top:
            self.pushed = raw.digest

    def commit(self) -> None:
        """Nothing to finish: the top manifest was the last write."""
