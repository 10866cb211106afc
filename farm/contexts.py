"""Build contexts on the wire: deterministic, content-addressed tar.gz files.

The producer packs a context directory (honouring ``.dockerignore`` the way
Docker does) into ``<sha256>.tar.gz`` and uploads it once under
``contexts/sha256/<hex>.tar.gz``; the worker downloads it, checks the digest and
unpacks it with :func:`executor.context.unpack_tar`'s path, link and size checks.
The same tree always packs to the same bytes: entries sorted, mtimes, owners and
the gzip header zeroed, so a re-submitted build finds its context already stored.

::

    ExecutorError
    ├── ContextPackError    a context directory that cannot be packed (permanent)
    └── ContextFetchError   a stored context that is missing its digest or unsafe (permanent)
"""

from __future__ import annotations

import gzip
import os
import posixpath
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from executor.context import BuildContext, ContextError, IgnoreMatcher, UnpackLimits, unpack_tar
from executor.context.archive import symlink_escapes
from executor.errors import ExecutorError
from executor.oci.digest import Digest, HashingWriter, digest_file

__all__ = [
    "ContextFetchError",
    "ContextPackError",
    "PackedContext",
    "context_key",
    "fetch_context",
    "pack_context",
    "upload_context",
]

_KEY_PREFIX = "contexts/sha256/"
# Contexts are mostly source text; level 6 is zlib's default balance of speed and size.
_COMPRESS_LEVEL = 6
_ARCHIVE_NAME = "context.tar.gz"
_UNPACK_DIR = "context"


class ContextPackError(ExecutorError):
    """A context directory that cannot be packed: no Dockerfile, an unsafe symlink."""

    temporary = False


class ContextFetchError(ExecutorError):
    """A stored context whose bytes are not its digest, or that cannot be unpacked safely."""

    temporary = False


class _Store(Protocol):
    """The three object-store calls contexts need (a subset of executor's ObjectStore)."""

    def exists(self, key: str) -> bool: ...

    def put_file(self, key: str, path: Path) -> None: ...

    def get_file(self, key: str, path: Path) -> None: ...


@dataclass(frozen=True)
class PackedContext:
    """A packed context: its sha256, the tar.gz on local disk, its size in bytes."""

    digest: Digest
    path: Path
    size: int


def context_key(digest: Digest) -> str:
    """The object-store key of a packed context (DESIGN.md, "The flow of one build")."""
    return f"{_KEY_PREFIX}{digest.hex}.tar.gz"


# -- packing -----------------------------------------------------------------------------


class _Walker:
    """Lists what Docker would send: sorted, ignore rules applied, special files skipped."""

    def __init__(
        self, root: Path, ignore: IgnoreMatcher, always: frozenset[str], skip: str | None
    ) -> None:
        self.root = root
        self.ignore = ignore
        self.always = always
        self.skip = skip  # the output directory, when it lies inside the context

    def _hidden(self, rel: str) -> bool:
        return rel not in self.always and self.ignore.matches(rel)

    def _needed_below(self, rel: str) -> bool:
        """Whether an ignored directory may still hold something sent."""
        return self.ignore.has_exceptions or any(path.startswith(rel + "/") for path in self.always)

    def entries(self, directory: str = "") -> Iterator[tuple[str, os.stat_result]]:
        start = self.root / directory if directory else self.root
        with os.scandir(start) as scan:
            names = sorted(entry.name for entry in scan)
        for name in names:
            rel = posixpath.join(directory, name) if directory else name
            if rel == self.skip:
                continue
            info = os.lstat(self.root / rel)
            mode = info.st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                continue  # sockets, FIFOs and devices are never sent
            hidden = self._hidden(rel)
            below: list[tuple[str, os.stat_result]] = []
            if stat.S_ISDIR(info.st_mode) and (not hidden or self._needed_below(rel)):
                below = list(self.entries(rel))
            if not hidden or below:
                yield rel, info
            yield from below


def _tarinfo(root: Path, rel: str, info: os.stat_result) -> tarfile.TarInfo:
    """A header with only what the content means: no times, owners or names of owners."""
    member = tarfile.TarInfo(rel)
    member.mode = stat.S_IMODE(info.st_mode)
    member.mtime = 0
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    if stat.S_ISDIR(info.st_mode):
        member.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(info.st_mode):
        member.type = tarfile.SYMTYPE
        member.linkname = os.readlink(root / rel)
        if symlink_escapes(rel, member.linkname):
            raise ContextPackError(
                f"packing context {root}: symlink {rel!r} -> {member.linkname!r} "
                "leaves the context; workers would refuse it"
            )
    else:
        # Hard links are stored as separate files: the digest depends on content only.
        member.type = tarfile.REGTYPE
        member.size = info.st_size
    return member


def _write_tar(sink: HashingWriter, root: Path, walker: _Walker) -> None:
    # filename="" and mtime=0 keep the gzip header free of names and times.
    with (
        gzip.GzipFile(
            filename="", mode="wb", fileobj=sink, compresslevel=_COMPRESS_LEVEL, mtime=0
        ) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel, info in walker.entries():
            member = _tarinfo(root, rel, info)
            if member.type == tarfile.REGTYPE:
                with open(root / rel, "rb") as source:
                    tar.addfile(member, source)
            else:
                tar.addfile(member)


def pack_context(
    directory: Path, *, dockerfile: str = "Dockerfile", dest_dir: Path
) -> PackedContext:
    """Pack ``directory`` into ``dest_dir/<hex>.tar.gz``, streaming, and return it.

    ``.dockerignore`` applies (``<Dockerfile>.dockerignore`` beside the Dockerfile
    wins); the Dockerfile and the ignore file in use are always included.
    """
    try:
        context = BuildContext(directory, dockerfile=dockerfile)
    except (ContextError, OSError) as exc:
        raise ContextPackError(f"packing context {directory}: {exc}") from exc
    root = context.root
    try:
        dockerfile_rel = context.dockerfile_path.relative_to(root).as_posix()
    except ValueError as exc:
        raise ContextPackError(
            f"packing context {directory}: Dockerfile {dockerfile!r} is outside the context"
        ) from exc
    if not context.dockerfile_path.is_file():
        raise ContextPackError(f"packing context {directory}: no Dockerfile {dockerfile_rel!r}")
    always = {dockerfile_rel}
    if context.ignore_file is not None:
        always.add(context.ignore_file.relative_to(root).as_posix())
    dest_dir.mkdir(parents=True, exist_ok=True)
    resolved_dest = dest_dir.resolve()
    skip = (
        resolved_dest.relative_to(root).as_posix() if resolved_dest.is_relative_to(root) else None
    )
    if skip == ".":
        raise ContextPackError(f"packing context {directory}: cannot write the archive into it")
    walker = _Walker(root, context.ignore, frozenset(always), skip)
    fd, temp_name = tempfile.mkstemp(prefix=".pack-", suffix=".tar.gz", dir=dest_dir)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            sink = HashingWriter(raw)
            _write_tar(sink, root, walker)
        digest, size = sink.digest(), sink.size
        final = dest_dir / f"{digest.hex}.tar.gz"
        os.replace(temp, final)
    except OSError as exc:
        raise ContextPackError(f"packing context {directory}: {exc}") from exc
    finally:
        temp.unlink(missing_ok=True)
    return PackedContext(digest=digest, path=final, size=size)


# -- moving contexts through the store ---------------------------------------------------


def upload_context(store: _Store, packed: PackedContext) -> str:
    """Upload ``packed`` unless the store has it already; return its key."""
    key = context_key(packed.digest)
    if not store.exists(key):
        store.put_file(key, packed.path)
    return key


def fetch_context(
    store: _Store, digest: Digest, workspace: Path, *, max_bytes: int, max_files: int
) -> Path:
    """Download, verify and safely unpack a context into ``workspace/context``.

    Returns that directory. The archive stays at ``workspace/context.tar.gz``.
    """
    key = context_key(digest)
    workspace.mkdir(parents=True, exist_ok=True)
    archive = workspace / _ARCHIVE_NAME
    archive.unlink(missing_ok=True)
    store.get_file(key, archive)
    got, _ = digest_file(str(archive))
    if got != digest:
        raise ContextFetchError(f"fetching context {key}: digest mismatch: got {got}")
    dest = workspace / _UNPACK_DIR
    limits = UnpackLimits(max_bytes=max_bytes, max_members=max_files)
    try:
        unpack_tar(archive, dest, limits=limits)
    except ContextError as exc:
        raise ContextFetchError(f"fetching context {digest.short}: {exc}") from exc
    return dest
