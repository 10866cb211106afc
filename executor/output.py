"""Where a finished image goes: registries, a docker-archive, an OCI layout, digest files."""

from __future__ import annotations

from executor.image import BuildImage
from executor.oci.archive import DockerArchiveSink
from executor.oci.copy import copy_image
from executor.oci.digest import Digest
from executor.oci.layout import OciLayoutSink
from executor.options import BuildOptions
from executor.registry.client import RegistryConnector
from executor.registry.remote import RegistrySink
from executor.report import BuildReporter


def write_outputs(
    image: BuildImage,
    options: BuildOptions,
    connector: RegistryConnector,
    reporter: BuildReporter,
) -> Digest:
    """Push and write the image as the options say; return its manifest digest."""
    source = image.source()
    digest = source.raw.digest
    if not options.no_push:
        for destination in options.destinations:
            same_registry = destination.registry == image.origin_registry
            mount_from = (
                [image.origin_repository] if same_registry and image.origin_repository else []
            )
            sink = RegistrySink(connector, destination, mount_from=mount_from)
            with reporter.phase("push"):
                copy_image(source, sink)
            reporter.count("pushed", sink.uploaded_bytes)  # not what was mounted or present
            reporter.info(f"pushed {destination.name}@{digest}")
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
