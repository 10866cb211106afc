"""Layer writing: a rootfs tree or a change list becomes a compressed layer on disk.

One streamed pass (DESIGN.md "Layers stream")::

    tar entries -> diff_id hasher -> compressor -> digest hasher -> temp file -> rename

File contents are copied in chunks, so memory stays flat whatever the layer size.
Entries are deterministic: ordered as :mod:`executor.fs.changes` says, numeric
owners with empty owner names, whole-second mtimes optionally clamped to
SOURCE_DATE_EPOCH (as BuildKit's rewrite-timestamp does), no atime or ctime.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from io import FileIO
from pathlib import Path
from typing import BinaryIO

from executor.errors import LayerError
from executor.fs.changes import (
    WHITEOUT_PREFIX,
    Change,
    EntrySource,
    PlannedEntry,
    plan_changes,
    walk_tree,
)
from executor.fs.compression import COMPRESSIONS, Buffer, Compressor, compressor
from executor.fs.tarwriter import EntryType, TarHeader, TarWriter
from executor.oci.digest import CHUNK_SIZE, Digest, Hasher
from executor.oci.mediatype import MediaType, layer_type

__all__ = ["LayerOptions", "WrittenLayer", "write_layer"]

# Extended attributes that go into layers. security.capability is what docker,
# containerd and kaniko keep (file capabilities, e.g. ping's cap_net_raw); user.*
# belongs to the image's own files. Left out on purpose: trusted.* (overlayfs
# bookkeeping such as trusted.overlay.opaque), security.selinux (host labels; the
# runtime relabels) and system.* (ACLs, which tar encodes differently).
_XATTR_NAMES = frozenset({"security.capability"})
_XATTR_PREFIXES = ("user.",)
# An xattr that vanished, or that this process may not read, is skipped rather than
# failing the layer; any other error (EIO, ...) fails it.
_SKIPPED_XATTR_ERRORS = frozenset(
    {errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES, errno.EPERM}
)
# Tar bytes are hashed and compressed in batches of about this size: large enough
# that per-call overhead vanishes, small next to the file chunks (CHUNK_SIZE).
_BATCH_SIZE = 256 << 10
# Whiteouts and opaque markers are empty files with fixed metadata: mode 0 as
# containerd writes them, owner root, mtime 0 so they never depend on the clock.
_MARKER_MODE = 0


@dataclass(frozen=True)
class LayerOptions:
    """How a layer is compressed and how its timestamps are treated."""

    # gzip is what every registry and runtime accepts; zstd needs an OCI manifest.
    compression: str = "gzip"
    # None: the algorithm's default (gzip 6, zstd 3; see compression.DEFAULT_LEVEL).
    level: int | None = None
    # Seconds since the epoch: later mtimes are clamped to it (reproducible builds,
    # https://reproducible-builds.org/specs/source-date-epoch/). None keeps mtimes.
    source_date_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise LayerError(
                f"unknown compression {self.compression!r}: want one of {COMPRESSIONS}"
            )
        compressor(self.compression, self.level)  # raises LayerError on a bad level
        epoch = self.source_date_epoch
        if epoch is not None and (isinstance(epoch, bool) or epoch < 0):
            raise LayerError(f"SOURCE_DATE_EPOCH {epoch!r}: want a non-negative integer")


@dataclass(frozen=True)
class WrittenLayer:
    """A layer file on disk with the digests and sizes a manifest and config need."""

    path: Path
    digest: Digest  # of the compressed file: the blob's address and descriptor digest
    diff_id: Digest  # of the uncompressed tar: the config's rootfs.diff_ids entry
    size: int  # compressed bytes, the descriptor's size
    uncompressed_size: int
    compression: str

    def media_type(self, manifest_type: str) -> MediaType:
        """The layer descriptor's media type in a manifest of ``manifest_type``."""
        try:
            return layer_type(manifest_type, self.compression)
        except ValueError as exc:
            raise LayerError(f"layer {self.digest.short}: {exc}") from exc


def write_layer(
    root: Path,
    changes: Iterable[Change] | None,
    dest: Path,
    *,
    options: LayerOptions = LayerOptions(),  # frozen: one shared default is safe
) -> WrittenLayer:
    """Write the layer for ``changes`` under ``root`` (None: the whole tree) to ``dest``.

    The file appears at ``dest`` only when complete; on any error the partial file
    is removed and LayerError names the path that failed.
    """
    root_bytes = os.fsencode(root)
    _check_paths(root, dest)
    entries = walk_tree(root_bytes) if changes is None else iter(plan_changes(changes))
    pack = compressor(options.compression, options.level)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(8)}.partial")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise LayerError(f"writing layer {dest}: {exc.strerror or exc}") from exc
    try:
        with open(fd, "wb", buffering=CHUNK_SIZE) as out:
            sink = _LayerSink(out, pack, dest, hash_compressed=options.compression != "none")
            tar = TarWriter(sink)
            _write_entries(tar, root_bytes, entries, options.source_date_epoch)
            tar.close()
            sink.finish()
            try:
                out.flush()
            except OSError as exc:
                raise LayerError(f"writing layer {dest}: {exc.strerror or exc}") from exc
        # No fsync: a layer lives in the build's workspace, which a retried build
        # wipes (tasks/build.py), so no later run can meet a file cut short by a
        # crash. The rename still means complete to every reader in this build.
        os.replace(tmp, dest)
    except OSError as exc:
        _remove(tmp)
        raise LayerError(f"writing layer {dest}: {exc.strerror or exc}") from exc
    except BaseException:
        _remove(tmp)
        raise
    diff_id = sink.diff.digest()
    return WrittenLayer(
        path=dest,
        digest=sink.blob.digest() if sink.blob is not None else diff_id,
        diff_id=diff_id,
        size=sink.written,
        uncompressed_size=sink.diff.size,
        compression=options.compression,
    )


def _check_paths(root: Path, dest: Path) -> None:
    try:
        if not stat.S_ISDIR(os.stat(root).st_mode):
            raise LayerError(f"writing layer from {root}: not a directory")
        target_dir = dest.parent.resolve(strict=True)
    except OSError as exc:
        raise LayerError(f"writing layer {dest} from {root}: {exc.strerror or exc}") from exc
    if target_dir.is_relative_to(root.resolve()):
        # The walk would meet the layer being written and chase its own tail.
        raise LayerError(f"writing layer {dest}: inside the rootfs {root} it is made from")


def _remove(path: Path) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


class _LayerSink:
    """Takes tar bytes: hashes them, compresses them, hashes and writes the result.

    Small writes (headers, padding, small files) are gathered into batches first:
    one hash and compressor call per batch instead of three per entry.
    """

    def __init__(
        self, out: BinaryIO, pack: Compressor, dest: Path, *, hash_compressed: bool
    ) -> None:
        self._out = out
        self._pack = pack
        self._dest = dest
        self._pending = bytearray()
        self.diff = Hasher()
        # Without compression the blob is the tar: its digest is the diff_id.
        self.blob = Hasher() if hash_compressed else None
        self.written = 0

    def write(self, data: bytes | memoryview, /) -> None:
        if len(self._pending) + len(data) < _BATCH_SIZE:
            self._pending += data
            return
        self._drain()
        if len(data) < _BATCH_SIZE:
            self._pending += data
        else:
            self._feed(data)

    def finish(self) -> None:
        self._drain()
        self._emit(self._pack.flush())

    def _drain(self) -> None:
        if self._pending:
            self._feed(bytes(self._pending))
            self._pending.clear()

    def _feed(self, data: bytes | memoryview) -> None:
        self.diff.update(data)
        self._emit(self._pack.compress(data))

    def _emit(self, packed: Buffer) -> None:
        if not packed:
            return
        if self.blob is not None:
            self.blob.update(packed)
        try:
            self._out.write(packed)
        except OSError as exc:
            raise LayerError(f"writing layer {self._dest}: {exc.strerror or exc}") from exc
        self.written += len(packed)


def _write_entries(
    tar: TarWriter, root: bytes, entries: Iterator[PlannedEntry], epoch: int | None
) -> None:
    # First archive name of each multiply-linked inode seen in this layer; later
    # names become hardlink entries to it (image-spec layer.md "Hardlinks").
    links: dict[tuple[int, int], bytes] = {}
    for entry in entries:
        name = entry.name
        if entry.source in (EntrySource.WHITEOUT, EntrySource.OPAQUE_MARKER):
            if entry.source is EntrySource.WHITEOUT:
                _check_deleted(root, entry)
            tar.add(TarHeader(name=name, type=EntryType.REGULAR, mode=_MARKER_MODE))
            continue
        path = os.path.join(root, name)
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise LayerError(f"reading {_display(path)}: {exc.strerror or exc}") from exc
        if entry.source is not EntrySource.ROOTFS and not stat.S_ISDIR(st.st_mode):
            # A parent that is a symlink would lead outside the rootfs.
            raise LayerError(f"{_display(path)}: {entry.source.value} is not a directory")
        header = _header(name, path, st, epoch, links)
        if header is None:
            continue
        if header.type is not EntryType.REGULAR or header.size == 0:
            tar.add(header)
            continue
        try:
            with _open_regular(path, st) as content:
                tar.add(header, content)
        except OSError as exc:
            raise LayerError(f"reading {_display(path)}: {exc.strerror or exc}") from exc


def _check_deleted(root: bytes, entry: PlannedEntry) -> None:
    gone = (*entry.parts[:-1], entry.parts[-1][len(WHITEOUT_PREFIX) :])
    path = os.path.join(root, *gone)
    if os.path.lexists(path):
        raise LayerError(f"{_display(path)}: listed as deleted but present in the rootfs")


def _header(
    name: bytes,
    path: bytes,
    st: os.stat_result,
    epoch: int | None,
    links: dict[tuple[int, int], bytes],
) -> TarHeader | None:
    """The tar header for a rootfs path, or None for what a layer cannot hold (sockets)."""
    mode = st.st_mode
    if stat.S_ISSOCK(mode):
        return None  # bound by a running process; meaningless in an image
    # Whole seconds: sub-second parts would force pax records and differ run to run.
    mtime = st.st_mtime_ns // 1_000_000_000
    if epoch is not None and mtime > epoch:
        mtime = epoch
    size, linkname, devmajor, devminor = 0, b"", 0, 0
    first = name
    if not stat.S_ISDIR(mode) and st.st_nlink > 1:
        first = links.setdefault((st.st_dev, st.st_ino), name)
    if first != name:
        kind, linkname = EntryType.HARDLINK, first
    elif stat.S_ISREG(mode):
        kind, size = EntryType.REGULAR, st.st_size
    elif stat.S_ISDIR(mode):
        kind = EntryType.DIRECTORY
    elif stat.S_ISLNK(mode):
        kind = EntryType.SYMLINK
        try:
            linkname = os.readlink(path)
        except OSError as exc:
            raise LayerError(f"reading {_display(path)}: {exc.strerror or exc}") from exc
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = EntryType.CHAR_DEVICE if stat.S_ISCHR(mode) else EntryType.BLOCK_DEVICE
        devmajor, devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        kind = EntryType.FIFO
    else:
        raise LayerError(f"{_display(path)}: unsupported file type {stat.S_IFMT(mode):o}")
    return TarHeader(
        name=name,
        type=kind,
        mode=stat.S_IMODE(mode),
        uid=st.st_uid,
        gid=st.st_gid,
        size=size,
        mtime=mtime,
        linkname=linkname,
        devmajor=devmajor,
        devminor=devminor,
        xattrs=_xattrs(path),
    )


def _xattrs(path: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """The xattrs a layer keeps, sorted by name; unreadable ones are skipped."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _SKIPPED_XATTR_ERRORS:
            return ()
        raise LayerError(f"listing xattrs of {_display(path)}: {exc.strerror}") from exc
    found = []
    for xname in names:
        if xname not in _XATTR_NAMES and not xname.startswith(_XATTR_PREFIXES):
            continue
        try:
            value = os.getxattr(path, xname, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in _SKIPPED_XATTR_ERRORS:
                continue
            raise LayerError(f"reading xattr {xname} of {_display(path)}: {exc.strerror}") from exc
        found.append((os.fsencode(xname), value))
    return tuple(sorted(found))


@contextmanager
def _open_regular(path: bytes, st: os.stat_result) -> Iterator[FileIO]:
    """Open a regular file without following a symlink swapped in since the lstat."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
    with open(fd, "rb", buffering=0) as f:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise LayerError(f"{_display(path)}: replaced while the layer was being written")
        yield f


def _display(path: bytes) -> str:
    # Not os.fsdecode: lone surrogates from non-UTF-8 names break strict log handlers.
    return path.decode("utf-8", "backslashreplace")
