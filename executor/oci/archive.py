"""docker-archive tarballs (the ``docker save`` / ``docker load`` format) as a source and sink.

The tar holds ``manifest.json`` (``[{"Config": ..., "RepoTags": [...], "Layers": [...]}]``),
the image config, one uncompressed layer tar per layer and a legacy ``repositories``
file. Names follow Docker 25+: ``blobs/sha256/<config hex>`` and
``blobs/sha256/<diff_id hex>``; readers (docker load, skopeo) follow the paths in
manifest.json, so older ``<id>/layer.tar`` archives read the same.

The config travels byte for byte, so the image ID (the config digest) and the
diff_ids survive registry -> archive -> registry. Layers are stored uncompressed,
as Docker stores them, so a layer's compressed digest does not survive.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO, cast

import zstandard

from executor.errors import (
    DigestMismatchError,
    InvalidReferenceError,
    LayerError,
    LayoutError,
)
from executor.fs.compression import decompressed, sniff
from executor.oci.config import ImageConfig
from executor.oci.digest import CHUNK_SIZE, Digest, Hasher, VerifyingReader, copy_verified
from executor.oci.image import BlobOpener, RawManifest
from executor.oci.manifest import Descriptor, Manifest, canonical_json
from executor.oci.mediatype import MediaType
from executor.oci.reference import ImageReference

MANIFEST_FILE = "manifest.json"
REPOSITORIES_FILE = "repositories"
_CONFIG_TYPES = frozenset({MediaType.OCI_CONFIG, MediaType.DOCKER_CONFIG})
# Enough to tell gzip (2 bytes) and zstd (4 bytes) magic apart.
_MAGIC_BYTES = 4
# A manifest.json or config past this is not one docker wrote; refuse to load it.
_MAX_JSON_BYTES = 16 << 20
# Links in a `docker save` archive point at a layer once; chains are not expected.
_MAX_LINK_HOPS = 8
# What every member of an archive we write looks like: reproducible bytes.
_MEMBER_MODE = 0o644


def _repo_tag(text: str) -> ImageReference:
    """A tag for the archive, parsed: a full reference with a tag and no digest."""
    try:
        ref = ImageReference.parse(text)
    except InvalidReferenceError as exc:
        raise LayoutError(f"docker-archive tag: {exc}") from exc
    if ref.digest is not None:
        raise LayoutError(f"docker-archive tag {text!r}: a docker-archive names images by tag")
    return ref


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


# --- the sink -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Staged:
    """A blob as stored in the staging directory: uncompressed, named by its diff_id."""

    diff_id: Digest
    path: Path


class DockerArchiveSink:
    """Writes one image as a docker-archive at ``path``, named by ``tags``.

    ``tags`` are full references (``docker.io/library/app:1``); the archive shows
    them the way Docker does (``app:1``). No tags gives an untagged archive that
    ``docker load`` loads by image ID. Blobs are staged (layers decompressed) in a
    directory beside ``path``; ``commit`` writes the tar and renames it into place.
    """

    # A docker-archive holds image manifests only; copy selects a platform first.
    accepts_index = False

    # No tags is allowed, as in `docker save IMAGE_ID`.
    def __init__(self, path: Path, tags: Sequence[str] = ()) -> None:
        self._path = path
        refs = [_repo_tag(t) for t in tags]
        self._refs = tuple(dict.fromkeys(refs))
        self._staging: Path | None = None
        # copy_image stages blobs from several threads; the first creates the directory.
        self._staging_lock = threading.Lock()
        self._cleanup: weakref.finalize[Any, Any] | None = None
        self._staged: dict[Digest, _Staged] = {}
        self._manifest: Manifest | None = None

    def describe(self) -> str:
        names = ",".join(ref.familiar for ref in self._refs)
        return f"docker-archive:{self._path}:{names}" if names else f"docker-archive:{self._path}"

    def _staging_dir(self) -> Path:
        with self._staging_lock:
            return self._create_staging_dir()

    def _create_staging_dir(self) -> Path:
        if self._staging is None:
            try:
                staging = Path(
                    tempfile.mkdtemp(dir=self._path.parent, prefix=f".{self._path.name}.staging-")
                )
            except OSError as exc:
                raise LayoutError(
                    f"{self.describe()}: creating a staging directory: {exc}"
                ) from exc
            self._staging = staging
            # Removed at commit, or when the sink is dropped after a failed copy.
            self._cleanup = weakref.finalize(self, shutil.rmtree, staging, ignore_errors=True)
        return self._staging

    def has_blob(self, descriptor: Descriptor) -> bool:
        return descriptor.digest in self._staged

    def put_blob(self, descriptor: Descriptor, opener: BlobOpener) -> None:
        what = f"{self.describe()}: blob {descriptor.digest.short}"
        fd, tmp = tempfile.mkstemp(dir=self._staging_dir(), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out, opener() as source:
                if descriptor.media_type in _CONFIG_TYPES:
                    # The config is the image ID: it must stay byte for byte.
                    copy_verified(
                        source, out, descriptor.digest, expected_size=descriptor.size, what=what
                    )
                    diff_id = descriptor.digest
                else:
                    diff_id = _decompress_verified(source, out, descriptor, what)
            final = self._staging_dir() / f"{descriptor.digest.algorithm}-{descriptor.digest.hex}"
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._staged[descriptor.digest] = _Staged(diff_id, final)

    def put_manifest(self, raw: RawManifest, *, top: bool) -> None:
        what = f"{self.describe()}: manifest {raw.digest.short}"
        if raw.is_index:
            raise LayoutError(
                f"{what}: a docker-archive cannot hold an index ({raw.media_type}); "
                "select one platform first"
            )
        if not top:
            raise LayoutError(f"{what}: a docker-archive holds exactly one image manifest")
        self._manifest = raw.manifest()

    def commit(self) -> None:
        try:
            if self._manifest is None:
                raise LayoutError(f"{self.describe()}: nothing to commit: no manifest was written")
            members = self._members(self._manifest)
            self._write_tar(members)
        finally:
            if self._cleanup is not None:
                self._cleanup()
            self._staged.clear()
            self._staging = None

    def _lookup(self, descriptor: Descriptor, role: str) -> _Staged:
        staged = self._staged.get(descriptor.digest)
        if staged is None:
            raise LayoutError(
                f"{self.describe()}: {role} {descriptor.digest.short} was not written"
            )
        return staged

    def _members(self, manifest: Manifest) -> list[tuple[str, bytes | Path]]:
        """What goes in the tar, in order: manifest.json, repositories, config, layers."""
        what = self.describe()
        config_blob = self._lookup(manifest.config, "config")
        config = ImageConfig.parse(config_blob.path.read_bytes())
        layers = [self._lookup(layer, "layer") for layer in manifest.layers]
        diff_ids = tuple(layer.diff_id for layer in layers)
        if len(diff_ids) != len(config.diff_ids):
            raise LayoutError(
                f"{what}: the manifest has {len(diff_ids)} layers "
                f"but the config lists {len(config.diff_ids)} diff_ids"
            )
        for i, (got, want) in enumerate(zip(diff_ids, config.diff_ids, strict=True)):
            if got != want:
                raise DigestMismatchError(
                    f"{what}: layer {i} decompresses to {got} but the config's diff_id is {want}"
                )
        config_name = _blob_name(manifest.config.digest)
        layer_names = [_blob_name(d) for d in diff_ids]
        entry = {
            "Config": config_name,
            "RepoTags": [ref.familiar for ref in self._refs] or None,
            "Layers": layer_names,
        }
        members: list[tuple[str, bytes | Path]] = [(MANIFEST_FILE, canonical_json([entry]))]
        if self._refs:
            members.append((REPOSITORIES_FILE, _repositories(self._refs, manifest.config.digest)))
        members.append((config_name, config_blob.path))
        written = {config_name}
        for name, layer in zip(layer_names, layers, strict=True):
            # The same layer twice in one image is stored once, as docker save does.
            if name not in written:
                members.append((name, layer.path))
                written.add(name)
        return members

    def _write_tar(self, members: list[tuple[str, bytes | Path]]) -> None:
        what = self.describe()
        try:
            fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=f".{self._path.name}.tmp-")
        except OSError as exc:
            raise LayoutError(f"{what}: writing the archive: {exc}") from exc
        try:
            with (
                os.fdopen(fd, "wb") as out,
                tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                for name, content in members:
                    if isinstance(content, bytes):
                        tar.addfile(_member(name, len(content)), io.BytesIO(content))
                    else:
                        with content.open("rb") as f:
                            tar.addfile(_member(name, content.stat().st_size), f)
            os.chmod(tmp, _MEMBER_MODE)
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def _blob_name(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = _MEMBER_MODE
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _repositories(refs: Sequence[ImageReference], config: Digest) -> bytes:
    """The legacy ``repositories`` file: familiar repository -> tag -> image ID hex."""
    repos: dict[str, dict[str, str]] = {}
    for ref in refs:
        name = ImageReference(ref.registry, ref.repository).familiar
        repos.setdefault(name, {})[ref.tag or "latest"] = config.hex
    return canonical_json(repos)


class _Prefixed:
    """A stream that gives ``head`` first, then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                out, self._head = self._head + self._stream.read(), b""
                return out
            out, self._head = self._head[:size], self._head[size:]
            return out
        return self._stream.read(size)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stream.close()


def _decompress_verified(
    source: IO[bytes], out: IO[bytes], descriptor: Descriptor, what: str
) -> Digest:
    """Copy the uncompressed bytes of a layer to ``out``; return its diff_id.

    The compressed bytes are checked against the descriptor as they pass; the
    compression comes from the magic bytes, which the media type may misstate.
    """
    verifying = VerifyingReader(source, descriptor.digest, descriptor.size, what)
    head = b""
    while len(head) < _MAGIC_BYTES and (chunk := verifying.read(_MAGIC_BYTES - len(head))):
        head += chunk
    compression = sniff(head)
    stream = decompressed(cast(IO[bytes], _Prefixed(head, cast(IO[bytes], verifying))), compression)
    hasher = Hasher()
    try:
        while chunk := stream.read(CHUNK_SIZE):
            hasher.update(chunk)
            out.write(chunk)
    except zstandard.ZstdError as exc:
        raise LayerError(f"{what}: corrupt zstd stream: {exc}") from exc
    # The decompressor may stop at its end marker before the last read; drain so
    # the verifying reader sees EOF and checks the digest of every byte.
    while verifying.read(CHUNK_SIZE):
        pass
    return hasher.digest()


# --- the source -----------------------------------------------------------------------


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
            head = chunk[:_MAGIC_BYTES]
        hasher.update(chunk)
    return hasher.digest(), hasher.size, sniff(head)
