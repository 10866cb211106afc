"""Writing files into a stage rootfs safely: every parent resolved as under chroot,
every final name created with O_NOFOLLOW, owners and modes set on the fd.

A COPY of a directory writes many files into few directories, so the Copier keeps
the fds of the directories it resolved last and resolves a parent once, not once
per file. A cached fd stays right only while no directory or symlink on the way
is replaced: the Copier drops them all whenever it removes anything but a
regular file, and :meth:`Copier.forget_dirs` drops them after others wrote.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import IO

from executor.errors import LayerError
from executor.fs.rootpath import DIR_FLAGS, clean_parts, open_root, resolve_dir

_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SOURCE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# Copies go in blocks this big when the kernel cannot copy for us.
_COPY_BYTES = 1 << 20
# Parent directory fds kept open: a sorted walk needs one at a time, a few more
# cover files interleaved between sources; far below any fd limit.
_OPEN_DIRS = 16


class Copier:
    """Puts files, directories and symlinks at absolute container paths in one rootfs."""

    def __init__(self, rootfs: Path, *, uid: int = 0, gid: int = 0) -> None:
        self.rootfs = rootfs
        self.uid = uid
        self.gid = gid
        self._root_fd = open_root(rootfs)
        self._dir_times: list[tuple[str, int]] = []
        # Parent parts -> fd, oldest first; see the module docstring for when it is dropped.
        self._dirs: dict[tuple[str, ...], int] = {}

    def close(self) -> None:
        self.forget_dirs()
        for path, mtime in reversed(self._dir_times):
            parts = clean_parts(path)
            try:
                parent = resolve_dir(self._root_fd, parts[:-1], create=False)
            except OSError:
                continue
            try:
                os.utime(parts[-1], ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
            except OSError:
                pass  # removed again meanwhile; nothing to date
            finally:
                os.close(parent)
        os.close(self._root_fd)

    def __enter__(self) -> Copier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forget_dirs(self) -> None:
        """Close the cached directory fds; call it after anything else wrote to the rootfs."""
        dirs, self._dirs = self._dirs, {}
        for fd in dirs.values():
            os.close(fd)

    def is_dir(self, path: str) -> bool:
        parts = clean_parts(path)
        if not parts:
            return True
        try:
            fd = resolve_dir(self._root_fd, parts, create=False)
        except OSError:
            return False
        os.close(fd)
        return True

    def _parent(self, path: str) -> tuple[int, str]:
        """The fd of ``path``'s parent (the Copier's: never close it) and the last name."""
        parts = clean_parts(path)
        if not parts:
            raise LayerError(f"{path}: cannot replace the root directory")
        key = tuple(parts[:-1])
        fd = self._dirs.get(key)
        if fd is not None:
            return fd, parts[-1]
        try:
            # Directories made on the way belong to the --chown owner (Docker's docs).
            owner = (self.uid, self.gid)
            fd = resolve_dir(self._root_fd, parts[:-1], create=True, owner=owner)
        except OSError as exc:
            raise LayerError(f"{path}: {exc.strerror or exc}") from exc
        if len(self._dirs) >= _OPEN_DIRS:
            oldest = next(iter(self._dirs))
            os.close(self._dirs.pop(oldest))
        self._dirs[key] = fd
        return fd, parts[-1]

    def _clear(self, path: str, *, keep_dir: bool) -> tuple[int, str, bool]:
        """Remove what is at ``path`` unless it is a directory we may keep.

        Returns the parent fd, the last name, and whether a directory was kept.
        """
        parent, name = self._parent(path)
        try:
            st = os.lstat(name, dir_fd=parent)
        except FileNotFoundError:
            return parent, name, False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return parent, name, True
            # Relative to the parent fd, never following a symlink (Python 3.11's dir_fd).
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
        if not stat.S_ISREG(st.st_mode):
            # A cached directory may have been reached through what is gone.
            self.forget_dirs()
            parent, name = self._parent(path)
        return parent, name, False

    def put_dir(self, path: str, *, mode: int, mtime_ns: int | None = None) -> None:
        parent, name = self._parent(path)
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            parent, name, kept = self._clear(path, keep_dir=True)
            if not kept:
                os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        try:
            os.fchown(fd, self.uid, self.gid)
            os.fchmod(fd, stat.S_IMODE(mode))
        finally:
            os.close(fd)
        if mtime_ns is not None:
            self._dir_times.append((path, mtime_ns))

    def _create(self, path: str) -> int:
        """A new, empty file at ``path`` open for writing (what was there is replaced)."""
        parent, name = self._parent(path)
        try:
            return os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)
        except FileExistsError:
            # Rare (files over files), so the common case pays no lstat for it.
            parent, name, kept = self._clear(path, keep_dir=True)
            if kept:
                raise LayerError(f"{path}: cannot overwrite a directory with a file") from None
            return os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)

    def _finish_file(self, fd: int, *, mode: int, mtime_ns: int | None) -> None:
        os.fchown(fd, self.uid, self.gid)
        os.fchmod(fd, stat.S_IMODE(mode))
        if mtime_ns is not None:
            os.utime(fd, ns=(mtime_ns, mtime_ns))

    def put_file(
        self, path: str, source: IO[bytes], *, mode: int, mtime_ns: int | None = None
    ) -> None:
        """Write ``source``'s bytes to a new file at ``path``."""
        fd = self._create(path)
        try:
            _copy_stream(source, fd)
            self._finish_file(fd, mode=mode, mtime_ns=mtime_ns)
        finally:
            os.close(fd)

    def copy_file(
        self, path: str, host_path: str | Path, *, mode: int, size: int, mtime_ns: int | None = None
    ) -> None:
        """Copy the regular file ``host_path`` (``size`` bytes when listed) to ``path``.

        The source is opened with O_NOFOLLOW: a symlink swapped in since it was
        listed is refused rather than followed out of the context.
        """
        try:
            source = os.open(host_path, _SOURCE_FLAGS)
        except OSError as exc:
            raise LayerError(f"{path}: reading {host_path}: {exc.strerror or exc}") from exc
        try:
            fd = self._create(path)
            try:
                _copy_fd(source, fd, size)
                self._finish_file(fd, mode=mode, mtime_ns=mtime_ns)
            finally:
                os.close(fd)
        finally:
            os.close(source)

    def put_symlink(self, path: str, target: str, *, mtime_ns: int | None = None) -> None:
        parent, name, _ = self._clear(path, keep_dir=False)
        os.symlink(target, name, dir_fd=parent)
        os.chown(name, self.uid, self.gid, dir_fd=parent, follow_symlinks=False)
        if mtime_ns is not None:
            os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)


def _copy_fd(in_fd: int, out_fd: int, size: int) -> None:
    """Copy ``in_fd`` to its end into ``out_fd``; ``size`` is what the file held when listed."""
    copied = 0
    try:
        # The kernel copies (and may share extents) without the bytes passing through us.
        while (n := os.copy_file_range(in_fd, out_fd, _COPY_BYTES)) > 0:
            copied += n
            if n < _COPY_BYTES and copied >= size:
                # A short copy at the listed size is the end of the file: no call to
                # learn it again (half the system calls for a small file).
                return
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    # copy_file_range moved both offsets past what it copied: read on from there.
    while chunk := os.read(in_fd, _COPY_BYTES):
        _write_all(out_fd, chunk)


def _copy_stream(source: IO[bytes], fd: int) -> None:
    try:
        in_fd = source.fileno()
    except (OSError, AttributeError, ValueError):
        in_fd = -1
    if in_fd >= 0:
        _copy_fd(in_fd, fd, sys.maxsize)  # no size known: copy until the kernel says end
        return
    while chunk := source.read(_COPY_BYTES):
        _write_all(fd, chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
