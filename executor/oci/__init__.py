"""OCI image values (digests, references, manifests, configs) and local image formats."""

from executor.oci.archive import DockerArchiveSink, DockerArchiveSource
from executor.oci.config import ContainerConfig, HistoryEntry, ImageConfig
from executor.oci.copy import CopyResult, copy_image
from executor.oci.digest import Digest
from executor.oci.image import ImageSink, ImageSource, RawManifest
from executor.oci.layout import OciLayoutSink, OciLayoutSource
from executor.oci.manifest import Descriptor, Index, Manifest, Platform
from executor.oci.mediatype import MediaType
from executor.oci.reference import ImageReference
from executor.oci.scratch import ScratchSource

__all__ = [
    "ContainerConfig",
    "CopyResult",
    "Descriptor",
    "Digest",
    "DockerArchiveSink",
    "DockerArchiveSource",
    "HistoryEntry",
    "ImageConfig",
    "ImageReference",
    "ImageSink",
    "ImageSource",
    "Index",
    "Manifest",
    "MediaType",
    "OciLayoutSink",
    "OciLayoutSource",
    "Platform",
    "RawManifest",
    "ScratchSource",
    "copy_image",
]
