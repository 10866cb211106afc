"""Reading one image from a docker-archive (``docker save`` output): DockerArchiveSource.

manifest.json lists the images; the one asked for is loaded in one pass over the tar,
with its manifest synthesized from the members' hashes. Member paths and links are
checked so that none leads outside the archive.
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, cast

from executor.errors import (
    DigestMismatchError,
    InvalidReferenceError,
    LayoutError,
)
from executor.fs.compression import sniff
from executor.oci.archive.format import MAGIC_BYTES, MANIFEST_FILE
from executor.oci.config import ImageConfig
from executor.oci.digest import CHUNK_SIZE, Digest, Hasher, VerifyingReader
from executor.oci.image import RawManifest
from executor.oci.manifest import Descriptor, Manifest
from executor.oci.mediatype import MediaType
from executor.oci.reference import ImageReference

# A manifest.json or config past this is not one docker wrote; refuse to load it.
_MAX_JSON_BYTES = 16 << 20
# Links in a `docker save` archive point at a layer once; chains are not expected.
_MAX_LINK_HOPS = 8


def _normalised(text: str) -> str:
    """A reference in full form for comparing, or the text as is if it does not parse."""
    try:
        return str(ImageReference.parse(text))
    except InvalidReferenceError:
        return text


def _check_member_name(name: str, what: str) -> str:
    """A member path, normalised; absolute paths and ``..`` are refused."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise LayoutError(f"{what}: member path {name!r} escapes the archive")
    return str(path)


@dataclass(frozen=True)
class _Loaded:
    """What one pass over the archive found: the synthesized manifest and blob members."""

    raw: RawManifest
    members: dict[Digest, tarfile.TarInfo]


class DockerArchiveSource:
    """Reads one image from a docker-archive: the entry tagged ``reference``, or the only one.

    The archive has no manifest of its own; one is synthesized (Docker schema 2,
    canonical JSON) from manifest.json and the hashes of its members, so the same
    archive always gives the same manifest digest.
    """

    def __init__(self, path: Path, reference: str | None = None) -> None:
        self._path = path
        self._reference = reference
        self._loaded: _Loaded | None = None

    def describe(self) -> str:
        if self._reference:
            return f"docker-archive:{self._path}:{self._reference}"
        return f"docker-archive:{self._path}"

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        raw = self._load().raw
        if digest is not None and digest != raw.digest:
            raise LayoutError(
                f"{self.describe()}: no manifest {digest.short}: the archive's image "
                f"is {raw.digest.short}"
            )
        return raw

    def open_blob(self, descriptor: Descriptor) -> contextlib.AbstractContextManager[BinaryIO]:
        info = self._load().members.get(descriptor.digest)
        if info is None:
            raise LayoutError(f"{self.describe()}: no blob {descriptor.digest.short}")
        return self._open_member(info, descriptor)

    @contextlib.contextmanager
    def _open_member(self, info: tarfile.TarInfo, descriptor: Descriptor) -> Iterator[BinaryIO]:
        what = f"{self.describe()}: {info.name}"
        # A fresh file per stream: readers may run in parallel threads, and a shared
        # TarFile seeks one file position for all of them.
        with self._path.open("rb") as f, tarfile.TarFile(fileobj=f) as tar:
            member = tar.extractfile(info)
            if member is None:
                raise LayoutError(f"{what}: not a regular file")
            yield cast(BinaryIO, VerifyingReader(member, descriptor.digest, descriptor.size, what))

    def _load(self) -> _Loaded:
        if self._loaded is None:
            what = self.describe()
            try:
                with tarfile.open(self._path, "r:") as tar:
                    self._loaded = _load_archive(tar, self._reference, what)
            except OSError as exc:
                raise LayoutError(f"{what}: reading the archive: {exc}") from exc
            except tarfile.TarError as exc:
                raise LayoutError(f"{what}: not an uncompressed tar archive: {exc}") from exc
        return self._loaded


def _load_archive(tar: tarfile.TarFile, reference: str | None, what: str) -> _Loaded:
    members: dict[str, tarfile.TarInfo] = {}
    for info in tar.getmembers():
        # A later member of the same name wins, as when the tar is extracted.
        members[_check_member_name(info.name, what)] = info
    entry = _choose_entry(_read_entries(tar, members, what), reference, what)
    config_info = _resolve(members, entry.config, what)
    config_data = _read_member(tar, config_info, what)
    config_digest, config_size = Digest.of(config_data), len(config_data)
    config = ImageConfig.parse(config_data)
    layer_paths = entry.layers
    if len(layer_paths) != len(config.diff_ids):
        raise LayoutError(
            f"{what}: manifest.json lists {len(layer_paths)} layers "
            f"but the config has {len(config.diff_ids)} diff_ids"
        )
    blobs = {config_digest: config_info}
    layers = []
    for i, (path, diff_id) in enumerate(zip(layer_paths, config.diff_ids, strict=True)):
        info = _resolve(members, path, what)
        digest, size, compression = _hash_member(tar, info, what)
        if compression == "none":
            if digest != diff_id:
                raise DigestMismatchError(
                    f"{what}: layer {i} ({path}) has digest {digest} but the config "
                    f"says diff_id {diff_id}"
                )
            media_type = MediaType.DOCKER_LAYER
        elif compression == "gzip":
            media_type = MediaType.DOCKER_LAYER_GZIP
        else:
            raise LayoutError(f"{what}: layer {path} is {compression}-compressed; want tar or gzip")
        layers.append(Descriptor(media_type, digest, size))
        blobs[digest] = info
    manifest = Manifest(
        MediaType.DOCKER_MANIFEST,
        Descriptor(MediaType.DOCKER_CONFIG, config_digest, config_size),
        tuple(layers),
    )
    return _Loaded(RawManifest(manifest.to_bytes(), MediaType.DOCKER_MANIFEST), blobs)


@dataclass(frozen=True)
class _Entry:
    """One image in manifest.json."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


def _read_entries(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], what: str
) -> list[_Entry]:
    """manifest.json's entries, parsed and checked."""
    if MANIFEST_FILE not in members:
        raise LayoutError(f"{what}: no {MANIFEST_FILE}: not a docker-archive")
    data = _read_member(tar, _resolve(members, MANIFEST_FILE, what), what)
    try:
        entries = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LayoutError(f"{what}: {MANIFEST_FILE}: invalid JSON: {exc}") from exc
    if not isinstance(entries, list) or not entries:
        raise LayoutError(f"{what}: {MANIFEST_FILE}: want a non-empty list of images")
    out = []
    for i, entry in enumerate(entries):
        where = f"{what}: {MANIFEST_FILE}[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise LayoutError(f"{where}: want an object with a Config path")
        layers = entry.get("Layers")
        if not isinstance(layers, list) or not all(isinstance(p, str) for p in layers):
            raise LayoutError(f"{where}: Layers: want a list of paths")
        # docker save writes null for an image saved by ID.
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise LayoutError(f"{where}: RepoTags: want a list of strings")
        out.append(_Entry(entry["Config"], tuple(tags), tuple(layers)))
    return out


def _choose_entry(entries: list[_Entry], reference: str | None, what: str) -> _Entry:
    def listing() -> str:
        tags = [", ".join(e.repo_tags) or f"(untagged #{i})" for i, e in enumerate(entries)]
        return "; ".join(tags)

    if reference is None:
        if len(entries) != 1:
            raise LayoutError(
                f"{what}: the archive holds {len(entries)} images; name one of: {listing()}"
            )
        return entries[0]
    wanted = _normalised(reference)
    for entry in entries:
        if any(_normalised(tag) == wanted for tag in entry.repo_tags):
            return entry
    raise LayoutError(f"{what}: no image tagged {reference!r} (has: {listing()})")


def _resolve(members: dict[str, tarfile.TarInfo], path: str, what: str) -> tarfile.TarInfo:
    """The regular-file member ``path`` names, following hard and symbolic links inside."""
    name = _check_member_name(path, what)
    for _ in range(_MAX_LINK_HOPS):
        info = members.get(name)
        if info is None:
            raise LayoutError(f"{what}: {path!r} is not in the archive")
        if info.isreg():
            return info
        if info.issym():
            target = str(PurePosixPath(name).parent / info.linkname)
        elif info.islnk():
            target = info.linkname
        else:
            raise LayoutError(f"{what}: {path!r} is not a regular file")
        name = _check_member_name(os.path.normpath(target), what)
    raise LayoutError(f"{what}: {path!r}: too many links")


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo, what: str) -> bytes:
    if info.size > _MAX_JSON_BYTES:
        raise LayoutError(f"{what}: {info.name} is {info.size} bytes; too big for JSON")
    member = tar.extractfile(info)
    if member is None:
        raise LayoutError(f"{what}: {info.name} is not a regular file")
    return member.read()


def _hash_member(tar: tarfile.TarFile, info: tarfile.TarInfo, what: str) -> tuple[Digest, int, str]:
    """Digest, size and compression (from the magic bytes) of a member."""
    member = tar.extractfile(info)
    if member is None:
        raise LayoutError(f"{what}: {info.name} is not a regular file")
    hasher = Hasher()
    head = b""
    while chunk := member.read(CHUNK_SIZE):
        if not head:
            head = chunk[:MAGIC_BYTES]
        hasher.update(chunk)
    return hasher.digest(), hasher.size, sniff(head)
