"""Where a finished image goes: registries, a docker-archive, an OCI layout, digest files."""

from __future__ import annotations

import queue
import threading

from executor.errors import ExecutorError
from executor.image import BuildImage, LayerRef
from executor.oci.archive import DockerArchiveSink
from executor.oci.copy import copy_image
from executor.oci.digest import Digest
from executor.oci.layout import OciLayoutSink
from executor.oci.reference import ImageReference
from executor.options import BuildOptions
from executor.registry.client import RegistryConnector
from executor.registry.remote import RegistrySink
from executor.report import BuildReporter


def write_outputs(
    image: BuildImage,
    options: BuildOptions,
    connector: RegistryConnector,
    reporter: BuildReporter,
    *,
    early: EarlyUploads | None = None,
) -> Digest:
    """Push and write the image as the options say; return its manifest digest.

    ``early``: the uploads to the first destination made during the build (finished);
    the blobs they put there are not asked about again.
    """
    source = image.source()
    digest = source.raw.digest
    if not options.no_push:
        pushed: list[ImageReference] = []
        for destination in options.destinations:
            same_registry = destination.registry == image.origin_registry
            mount_from = (
                [image.origin_repository] if same_registry and image.origin_repository else []
            )
            # A second destination on one registry mounts what the first uploaded.
            mount_from += [p.repository for p in pushed if p.registry == destination.registry]
            present = early.present if early is not None and not pushed else frozenset()
            sink = RegistrySink(connector, destination, mount_from=mount_from, present=present)
            with reporter.phase("push"):
                copy_image(source, sink)
            reporter.count("pushed", sink.uploaded_bytes)  # not what was mounted or present
            reporter.info(f"pushed {destination.name}@{digest}")
            pushed.append(destination)
    if options.tar_path is not None:
        tags = [str(d) for d in options.destinations if d.tag]
        copy_image(source, DockerArchiveSink(options.tar_path, tags))
        reporter.info(f"wrote docker-archive {options.tar_path}")
    if options.oci_layout_path is not None:
        tag = next((d.tag for d in options.destinations if d.tag), None) or "latest"
        copy_image(source, OciLayoutSink(options.oci_layout_path, tag))
        reporter.info(f"wrote OCI layout {options.oci_layout_path}:{tag}")
    if options.digest_file is not None:
        options.digest_file.write_text(str(digest))
    if options.image_name_with_digest_file is not None:
        lines = [f"{d.name}@{digest}\n" for d in options.destinations]
        options.image_name_with_digest_file.write_text("".join(lines))
    return digest


# How long a failed build waits for the early upload under way before it abandons it.
# A failed build pushes nothing, so the upload is of no use to it; the wait only lets
# an upload about to end be counted and logged (a healthy registry answers the last
# PUT within seconds, even when it moves a big blob within its storage). Ten seconds,
# the transport's connect timeout: the patience the executor already grants a
# registry to answer at all. A stalled registry would otherwise hold the build for the
# 120 s read timeout, and again for each of the upload's retries.
ABANDON_UPLOAD_AFTER_SECONDS = 10.0


class EarlyUploads:
    """Uploads the final stage's layers to the first destination while the build goes on.

    The push at the end then knows them there (``present``) and sends only the
    rest, so a big layer's upload overlaps the steps after it instead of waiting for
    the last one. One upload at a time: the steps need the cores more. A failed early
    upload is no error: the push at the end tries again, and reports what fails.
    """

    def __init__(
        self,
        connector: RegistryConnector,
        destination: ImageReference,
        reporter: BuildReporter,
        *,
        abandon_after: float = ABANDON_UPLOAD_AFTER_SECONDS,
    ) -> None:
        self._sink = RegistrySink(connector, destination)
        self._reporter = reporter
        self._abandon_after = abandon_after
        self._layers: queue.SimpleQueue[LayerRef | None] = queue.SimpleQueue()
        # Set when the build failed: what has not started is dropped, and an
        # abandoned upload that ends later says nothing.
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._present: set[Digest] = set()  # written by the upload thread only

    def offer(self, layer: LayerRef) -> None:
        if self._thread is None:
            # A daemon: an upload abandoned on a stalled registry must not keep the
            # process from exiting.
            self._thread = threading.Thread(target=self._run, name="early-upload", daemon=True)
            self._thread.start()
        self._layers.put(layer)

    def _run(self) -> None:
        while (layer := self._layers.get()) is not None:
            if not self._closed.is_set():
                self._upload(layer)

    def _upload(self, layer: LayerRef) -> None:
        descriptor = layer.descriptor
        try:
            if not self._sink.has_blob(descriptor):
                self._sink.put_blob(descriptor, layer.open)
            self._present.add(descriptor.digest)
        except ExecutorError as exc:
            if not self._closed.is_set():
                self._reporter.info(
                    f"uploading layer {descriptor.digest.short} early: {exc} (the push will retry)"
                )

    def finish(self) -> None:
        """Wait for every upload offered: the push at the end needs them."""
        self._layers.put(None)
        if self._thread is not None:
            self._thread.join()

    @property
    def present(self) -> frozenset[Digest]:
        """The layers now in the destination (uploaded or found there); after finish()."""
        return frozenset(self._present)

    def close(self) -> None:
        """Drop uploads not started (the build failed), give the one running
        ``abandon_after`` seconds and abandon it then, and count what was sent as
        pushed, failed build or not: the bytes went out."""
        self._closed.set()
        self._layers.put(None)
        if self._thread is not None:
            self._thread.join(self._abandon_after)
            if self._thread.is_alive():
                self._reporter.info(
                    f"abandoned an early upload still running after {self._abandon_after:g}s"
                )
        self._reporter.count("pushed", self._sink.uploaded_bytes)
