"""Where an image lives, as written on a command line, and opening it.

docker://REF | REF           a registry (REF normalised as Docker does)
oci:DIR[:TAG]                an OCI image layout directory
docker-archive:FILE[:REF]    a ``docker save`` tarball
scratch                      the empty image (as a source only)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from executor.errors import InvalidReferenceError
from executor.oci.archive import DockerArchiveSink, DockerArchiveSource
from executor.oci.image import ImageSink, ImageSource
from executor.oci.layout import OciLayoutSink, OciLayoutSource
from executor.oci.manifest import Platform
from executor.oci.reference import ImageReference
from executor.oci.scratch import ScratchSource
from executor.registry.client import RegistryConnector
from executor.registry.remote import RegistrySink, RegistrySource


@dataclass(frozen=True)
class RegistryLocation:
    reference: ImageReference

    def __str__(self) -> str:
        return f"docker://{self.reference}"


@dataclass(frozen=True)
class LayoutLocation:
    path: Path
    tag: str | None

    def __str__(self) -> str:
        return f"oci:{self.path}" + (f":{self.tag}" if self.tag else "")


@dataclass(frozen=True)
class ArchiveLocation:
    path: Path
    reference: ImageReference | None

    def __str__(self) -> str:
        return f"docker-archive:{self.path}" + (f":{self.reference}" if self.reference else "")


@dataclass(frozen=True)
class ScratchLocation:
    def __str__(self) -> str:
        return "scratch"


Location = RegistryLocation | LayoutLocation | ArchiveLocation | ScratchLocation


def parse_location(text: str) -> Location:
    """Parse a location string; raise InvalidReferenceError saying what is wrong."""
    if text == "scratch":
        return ScratchLocation()
    if text.startswith("docker://"):
        return RegistryLocation(ImageReference.parse(text.removeprefix("docker://")))
    if text.startswith("oci:"):
        rest = text.removeprefix("oci:")
        # A colon after the last slash starts the tag (paths with colons need ./ tricks).
        head, sep, tag = rest.rpartition(":")
        if sep and "/" not in tag and head:
            path, tag_or_none = head, tag or None
        else:
            path, tag_or_none = rest, None
        if not path:
            raise InvalidReferenceError(f"invalid location {text!r}: no directory after oci:")
        return LayoutLocation(Path(path), tag_or_none)
    if text.startswith("docker-archive:"):
        rest = text.removeprefix("docker-archive:")
        path, sep, ref = rest.partition(":")
        if not path:
            raise InvalidReferenceError(f"invalid location {text!r}: no file after docker-archive:")
        return ArchiveLocation(Path(path), ImageReference.parse(ref) if sep and ref else None)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise InvalidReferenceError(
            f"invalid location {text!r}: unknown transport {scheme!r} "
            "(want docker://, oci:, docker-archive: or a plain reference)"
        )
    return RegistryLocation(ImageReference.parse(text))


def open_source(
    location: Location, connector: RegistryConnector, *, platform: Platform | None = None
) -> ImageSource:
    match location:
        case RegistryLocation(reference):
            return RegistrySource(connector, reference)
        case LayoutLocation(path, tag):
            return OciLayoutSource(path, tag)
        case ArchiveLocation(path, reference):
            return DockerArchiveSource(path, str(reference) if reference else None)
        case ScratchLocation():
            return ScratchSource(platform or Platform.host())
    raise AssertionError(location)


def open_sink(
    location: Location,
    connector: RegistryConnector,
    *,
    mount_from: Sequence[str] = (),
) -> ImageSink:
    match location:
        case RegistryLocation(reference):
            return RegistrySink(connector, reference, mount_from=mount_from)
        case LayoutLocation(path, tag):
            return OciLayoutSink(path, tag)
        case ArchiveLocation(path, reference):
            return DockerArchiveSink(path, [str(reference)] if reference else [])
        case ScratchLocation():
            raise InvalidReferenceError("scratch can only be read from, not written to")
    raise AssertionError(location)
