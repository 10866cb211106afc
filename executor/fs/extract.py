"""Unpacking a layer onto a stage rootfs (image-spec layer.md "Applying Changesets").

One streamed pass: compressed blob -> decompressor -> diff_id hasher -> tar reader
-> files written in chunks. Whiteouts (layer.md "Whiteouts") delete what lower
layers left; an opaque marker empties its directory of lower entries but keeps
what this same layer adds, wherever the marker sits in the tar.

Every path stays inside the rootfs. Names are cleaned lexically (a leading ``/``
is dropped, ``..`` may not climb above the root), then resolved component by
component with directory file descriptors and ``O_NOFOLLOW``; a symlink met on
the way is followed as ``chroot`` would follow it, an absolute target starting
again at the rootfs and ``..`` stopping there (containerd's ``fs.RootPath``).
The last component is never followed: it is removed and created afresh, or opened
with ``O_NOFOLLOW``, and hardlinks link the target itself, never what it points to.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from executor.errors import LayerError
from executor.fs.changes import OPAQUE_MARKER, WHITEOUT_PREFIX
from executor.fs.compression import decompressed
from executor.fs.rootpath import DIR_FLAGS, clean_parts, resolve_dir
from executor.oci.digest import CHUNK_SIZE, Digest, Hasher, Reader

__all__ = ["ExtractOptions", "ExtractResult", "extract_layer"]

_WHITEOUT = WHITEOUT_PREFIX.decode()
_OPAQUE = OPAQUE_MARKER.decode()
# Linux's own limit on symlinks followed while resolving one path (MAXSYMLINKS).
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Parents a layer does not list are made like containerd makes them.
# The xattrs a layer may set, as executor.fs.layer writes them: file capabilities
# and the image's own user.* attributes; never trusted.*, security.selinux, system.*.
_XATTR_NAMES = frozenset({"security.capability"})
_XATTR_PREFIXES = ("user.",)
_PAX_XATTR = "SCHILY.xattr."
# What a filesystem or an unprivileged process says when it refuses an xattr or a
# device node; these become warnings, anything else fails the layer.
_REFUSED = frozenset({errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP})


@dataclass(frozen=True)
class ExtractOptions:
    """How to unpack a layer."""

    # Layers record numeric owners; chown needs root, so it is skipped otherwise.
    preserve_owners: bool = True
    # A limit on the uncompressed layer (tar) size; None means no limit.
    max_bytes: int | None = None
    # Image layers mean deletions by .wh. entries. A plain tarball (ADD) does not, and
    # such a name could not be stored in a layer either, so there it is refused.
    apply_whiteouts: bool = True


@dataclass(frozen=True)
class ExtractResult:
    """What unpacking a layer did."""

    diff_id: Digest
    size: int  # bytes of uncompressed tar
    files: int  # entries written: files, dirs, links, devices (not whiteouts)
    bytes: int  # bytes of regular file content written
    whiteouts: int
    warnings: tuple[str, ...] = ()


class _HashingReader:
    """Hashes and counts the uncompressed tar as tarfile reads it; enforces max_bytes."""

    def __init__(self, stream: Reader, max_bytes: int | None) -> None:
        self._stream = stream
        self.hasher = Hasher()
        self._max = max_bytes

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.hasher.update(data)
        if self._max is not None and self.hasher.size > self._max:
            raise LayerError(f"layer expands beyond the limit of {self._max} bytes")
        return data


@dataclass
class _State:
    root_fd: int
    chown: bool
    apply_whiteouts: bool = True
    # (st_dev, st_ino of the parent dir, name) of every path this layer wrote or
    # passed through; an opaque marker keeps these and drops the rest.
    added: set[tuple[int, int, str]] = field(default_factory=set)
    # Directory metadata set at the end, once children no longer change it.
    dirs: dict[tuple[str, ...], tarfile.TarInfo] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    whiteouts: int = 0


def extract_layer(
    stream: Reader,
    compression: str,
    rootfs: Path,
    *,
    options: ExtractOptions = ExtractOptions(),  # frozen, so sharing is safe
) -> ExtractResult:
    """Apply the layer in ``stream`` onto ``rootfs``; return its diff_id and counts."""
    rootfs.mkdir(parents=True, exist_ok=True)
    reader = _HashingReader(decompressed(stream, compression), options.max_bytes)  # type: ignore[arg-type]
    root_fd = os.open(rootfs, DIR_FLAGS & ~os.O_NOFOLLOW)
    state = _State(root_fd, options.preserve_owners and os.geteuid() == 0, options.apply_whiteouts)
    try:
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    _apply(state, tar, member, options.max_bytes, reader.hasher)
        except tarfile.TarError as exc:
            raise LayerError(f"reading layer: {exc}") from exc
        # The end-of-archive blocks and any padding after them count in the diff_id.
        while reader.read(CHUNK_SIZE):
            pass
        for parts, member in state.dirs.items():
            _finish_dir(state, list(parts), member)
    finally:
        os.close(root_fd)
    return ExtractResult(
        diff_id=reader.hasher.digest(),
        size=reader.hasher.size,
        files=state.files,
        bytes=state.bytes,
        whiteouts=state.whiteouts,
        warnings=tuple(state.warnings),
    )


def _apply(
    state: _State,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    max_bytes: int | None,
    hasher: Hasher,
) -> None:
    """Write one tar member, with errors named after it."""
    try:
        parts = clean_parts(member.name)
        if not parts:
            return  # the root itself ("./"): the rootfs keeps its own metadata
        base = parts[-1]
        if base.startswith(_WHITEOUT):
            if not state.apply_whiteouts:
                raise LayerError("names starting with .wh. cannot be stored in an image layer")
            _whiteout(state, parts)
            return
        if member.isreg() and max_bytes is not None and hasher.size + member.size > max_bytes:
            raise LayerError(f"layer expands beyond the limit of {max_bytes} bytes")
        parent = resolve_dir(
            state.root_fd,
            parts[:-1],
            create=True,
            on_component=lambda fd, name: _mark(state, fd, name),
        )
        try:
            _mark(state, parent, base)
            _write(state, tar, member, parent, base)
        finally:
            os.close(parent)
        if member.isdir():
            state.dirs[tuple(parts)] = member
        state.files += 1
    except (LayerError, OSError, tarfile.TarError) as exc:
        raise LayerError(f"{member.name!r}: {exc}") from exc


def _mark(state: _State, dir_fd: int, name: str) -> None:
    st = os.fstat(dir_fd)
    state.added.add((st.st_dev, st.st_ino, name))


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _remove(name: str, dir_fd: int, st: os.stat_result) -> None:
    """Remove a file, a symlink or a whole directory tree, never following links."""
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _whiteout(state: _State, parts: list[str]) -> None:
    """Apply ``.wh.NAME`` or ``.wh..wh..opq`` (layer.md "Whiteouts")."""
    base = parts[-1]
    state.whiteouts += 1
    try:
        parent = resolve_dir(state.root_fd, parts[:-1], create=False)
    except (FileNotFoundError, NotADirectoryError):
        return  # nothing below to hide
    try:
        if base == _OPAQUE:
            _prune(state, parent)
            return
        gone = base[len(_WHITEOUT) :]
        if gone.startswith(_WHITEOUT):
            # Other .wh..wh. names are aufs bookkeeping (e.g. .wh..wh.plnk).
            state.warnings.append(f"{'/'.join(parts)!r}: ignored aufs metadata")
            return
        if gone in ("", ".", ".."):
            raise LayerError(f"whiteout of {gone!r} names no entry")
        st = os.fstat(parent)
        if (st.st_dev, st.st_ino, gone) in state.added:
            return  # whiteouts hide lower layers only, never this one's entries
        found = _lstat(gone, parent)
        if found is not None:
            _remove(gone, parent, found)
    finally:
        os.close(parent)


def _prune(state: _State, dir_fd: int) -> None:
    """Remove whatever lower layers left in a directory; keep this layer's entries."""
    here = os.fstat(dir_fd)
    for name in os.listdir(dir_fd):
        st = os.lstat(name, dir_fd=dir_fd)
        if (here.st_dev, here.st_ino, name) not in state.added:
            _remove(name, dir_fd, st)
        elif stat.S_ISDIR(st.st_mode):
            child = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
            try:
                _prune(state, child)
            finally:
                os.close(child)


def _write(
    state: _State, tar: tarfile.TarFile, member: tarfile.TarInfo, parent: int, name: str
) -> None:
    """Create one entry in ``parent``, replacing what is there unless both are dirs."""
    existing = _lstat(name, parent)
    if member.islnk():
        _hardlink(state, member, parent, name, existing)
        return
    if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
        _remove(name, parent, existing)
    if member.isdir():
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        try:
            if state.chown:
                os.fchown(fd, member.uid, member.gid)
            _set_xattrs(state, member, fd)
        finally:
            os.close(fd)
        return
    if member.isreg():
        _regular(state, tar, member, parent, name)
    elif member.issym():
        os.symlink(member.linkname, name, dir_fd=parent)
        if state.chown:
            os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        _set_mtime(name, parent, member)
    elif member.ischr() or member.isblk() or member.isfifo():
        _special(state, member, parent, name)
    else:
        raise LayerError(f"unsupported tar entry type {member.type!r}")


def _regular(
    state: _State, tar: tarfile.TarFile, member: tarfile.TarInfo, parent: int, name: str
) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise LayerError("regular file without content")
    fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)
    try:
        while chunk := source.read(CHUNK_SIZE):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
            state.bytes += len(chunk)
        if state.chown:
            os.fchown(fd, member.uid, member.gid)
        # After chown, which clears setuid and setgid.
        os.fchmod(fd, stat.S_IMODE(member.mode))
        _set_xattrs(state, member, fd)
        os.utime(fd, (member.mtime, member.mtime))
    finally:
        os.close(fd)


def _special(state: _State, member: tarfile.TarInfo, parent: int, name: str) -> None:
    mode = stat.S_IMODE(member.mode)
    try:
        if member.isfifo():
            os.mkfifo(name, mode, dir_fd=parent)
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            device = os.makedev(member.devmajor, member.devminor)
            os.mknod(name, kind | mode, device, dir_fd=parent)
    except OSError as exc:
        if exc.errno not in _REFUSED:
            raise
        state.warnings.append(f"{member.name!r}: device node skipped: {exc.strerror}")
        state.files -= 1
        return
    if state.chown:
        os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
    # Just made by mknod in a directory fd, so the name is not a symlink.
    os.chmod(name, mode, dir_fd=parent)
    _set_mtime(name, parent, member)


def _hardlink(
    state: _State,
    member: tarfile.TarInfo,
    parent: int,
    name: str,
    existing: os.stat_result | None,
) -> None:
    target = clean_parts(member.linkname)
    if not target:
        raise LayerError("hardlink to the rootfs itself")
    try:
        target_parent = resolve_dir(state.root_fd, target[:-1], create=False)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise LayerError(f"hardlink target {member.linkname!r} does not exist") from exc
    try:
        found = _lstat(target[-1], target_parent)
        if found is None:
            raise LayerError(f"hardlink target {member.linkname!r} does not exist")
        if stat.S_ISDIR(found.st_mode):
            raise LayerError(f"hardlink target {member.linkname!r} is a directory")
        if existing is not None:
            if (existing.st_dev, existing.st_ino) == (found.st_dev, found.st_ino):
                return
            _remove(name, parent, existing)
        # follow_symlinks=False: a link to a symlink links the symlink itself.
        os.link(
            target[-1],
            name,
            src_dir_fd=target_parent,
            dst_dir_fd=parent,
            follow_symlinks=False,
        )
    finally:
        os.close(target_parent)


def _set_xattrs(state: _State, member: tarfile.TarInfo, fd: int) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith(_PAX_XATTR):
            continue
        attr = key[len(_PAX_XATTR) :]
        if attr not in _XATTR_NAMES and not attr.startswith(_XATTR_PREFIXES):
            continue
        # tarfile decodes pax values as UTF-8 with surrogateescape; undo it for binary.
        raw = value.encode("utf-8", "surrogateescape")
        try:
            os.setxattr(fd, attr, raw)
        except OSError as exc:
            if exc.errno not in _REFUSED:
                raise
            state.warnings.append(f"{member.name!r}: xattr {attr} refused: {exc.strerror}")


def _set_mtime(name: str, parent: int, member: tarfile.TarInfo) -> None:
    os.utime(name, (member.mtime, member.mtime), dir_fd=parent, follow_symlinks=False)


def _finish_dir(state: _State, parts: list[str], member: tarfile.TarInfo) -> None:
    """Set a directory's mode and mtime, after everything inside it was written."""
    try:
        parent = resolve_dir(state.root_fd, parts[:-1], create=False)
        try:
            fd = os.open(parts[-1], DIR_FLAGS, dir_fd=parent)
        finally:
            os.close(parent)
    except (FileNotFoundError, NotADirectoryError):
        return  # replaced or whited out later in the same layer
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return  # replaced by a symlink later in the same layer
        raise LayerError(f"{member.name!r}: {exc}") from exc
    try:
        os.fchmod(fd, stat.S_IMODE(member.mode))
        os.utime(fd, (member.mtime, member.mtime))
    except OSError as exc:
        raise LayerError(f"{member.name!r}: {exc}") from exc
    finally:
        os.close(fd)
