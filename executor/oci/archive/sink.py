"""Writing one image as a docker-archive (``docker load`` input): DockerArchiveSink.

Blobs are staged in a directory beside the archive, layers decompressed and named by
diff_id; ``commit`` writes manifest.json, the legacy ``repositories`` file, the config
and the layers into a tar with reproducible member headers.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from executor.errors import (
    DigestMismatchError,
    InvalidReferenceError,
    LayerError,
    LayoutError,
)
from executor.fs.compression import decompressed, sniff
from executor.oci.archive.format import MAGIC_BYTES, MANIFEST_FILE
from executor.oci.config import ImageConfig
from executor.oci.digest import CHUNK_SIZE, Digest, Hasher, VerifyingReader, copy_verified
from executor.oci.image import BlobOpener, RawManifest
from executor.oci.manifest import Descriptor, Manifest, canonical_json
from executor.oci.mediatype import MediaType
from executor.oci.reference import ImageReference

REPOSITORIES_FILE = "repositories"
_CONFIG_TYPES = frozenset({MediaType.OCI_CONFIG, MediaType.DOCKER_CONFIG})
# What every member of an archive we write looks like: reproducible bytes.
_MEMBER_MODE = 0o644


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


def _repo_tag(text: str) -> ImageReference:
    """A tag for the archive, parsed: a full reference with a tag and no digest."""
    try:
        ref = ImageReference.parse(text)
    except InvalidReferenceError as exc:
        raise LayoutError(f"docker-archive tag: {exc}") from exc
    if ref.digest is not None:
        raise LayoutError(f"docker-archive tag {text!r}: a docker-archive names images by tag")
    return ref


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
    while len(head) < MAGIC_BYTES and (chunk := verifying.read(MAGIC_BYTES - len(head))):
        head += chunk
    compression = sniff(head)
    stream = decompressed(cast(IO[bytes], _Prefixed(head, cast(IO[bytes], verifying))), compression)
    hasher = Hasher()
    try:
        while chunk := stream.read(CHUNK_SIZE):
            hasher.update(chunk)
            out.write(chunk)
    except LayerError as exc:  # a corrupt gzip or zstd stream
        raise LayerError(f"{what}: {exc}") from exc
    # The decompressor may stop at its end marker before the last read; drain so
    # the verifying reader sees EOF and checks the digest of every byte.
    while verifying.read(CHUNK_SIZE):
        pass
    return hasher.digest()
