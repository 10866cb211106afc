"""Writing files into a stage rootfs safely: every parent resolved as under chroot,
every final name created with O_NOFOLLOW, owners and modes set on the fd."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import IO

from executor.errors import LayerError
from executor.fs.rootpath import DIR_FLAGS, clean_parts, open_root, resolve_dir

_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Copies go in blocks this big when the kernel cannot copy for us.
_COPY_BYTES = 1 << 20


class Copier:
    """Puts files, directories and symlinks at absolute container paths in one rootfs."""

    def __init__(self, rootfs: Path, *, uid: int = 0, gid: int = 0) -> None:
        self.rootfs = rootfs
        self.uid = uid
        self.gid = gid
        self._root_fd = open_root(rootfs)
        self._dir_times: list[tuple[str, int]] = []

    def close(self) -> None:
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
        parts = clean_parts(path)
        if not parts:
            raise LayerError(f"{path}: cannot replace the root directory")
        try:
            # Directories made on the way belong to the --chown owner (Docker's docs).
            owner = (self.uid, self.gid)
            return resolve_dir(self._root_fd, parts[:-1], create=True, owner=owner), parts[-1]
        except OSError as exc:
            raise LayerError(f"{path}: {exc.strerror or exc}") from exc

    @staticmethod
    def _clear(name: str, parent: int, *, keep_dir: bool) -> bool:
        """Remove what is at ``name`` unless it is a directory we may keep; True if one is kept."""
        try:
            st = os.lstat(name, dir_fd=parent)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
            try:
                shutil.rmtree(fd)  # type: ignore[arg-type]
            finally:
                os.close(fd)
            os.rmdir(name, dir_fd=parent)
            return False
        os.unlink(name, dir_fd=parent)
        return False

    def put_dir(self, path: str, *, mode: int, mtime_ns: int | None = None) -> None:
        parent, name = self._parent(path)
        try:
            if not self._clear(name, parent, keep_dir=True):
                os.mkdir(name, 0o700, dir_fd=parent)
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
            try:
                os.fchown(fd, self.uid, self.gid)
                os.fchmod(fd, stat.S_IMODE(mode))
            finally:
                os.close(fd)
            if mtime_ns is not None:
                self._dir_times.append((path, mtime_ns))
        finally:
            os.close(parent)

    def put_file(
        self, path: str, source: IO[bytes], *, mode: int, mtime_ns: int | None = None
    ) -> None:
        parent, name = self._parent(path)
        try:
            if self._clear(name, parent, keep_dir=True):
                raise LayerError(f"{path}: cannot overwrite a directory with a file")
            fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)
            try:
                _copy_into(source, fd)
                os.fchown(fd, self.uid, self.gid)
                os.fchmod(fd, stat.S_IMODE(mode))
                if mtime_ns is not None:
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)
        finally:
            os.close(parent)

    def put_symlink(self, path: str, target: str, *, mtime_ns: int | None = None) -> None:
        parent, name = self._parent(path)
        try:
            if self._clear(name, parent, keep_dir=False):
                raise AssertionError("unreachable: keep_dir=False removes directories")
            os.symlink(target, name, dir_fd=parent)
            os.chown(name, self.uid, self.gid, dir_fd=parent, follow_symlinks=False)
            if mtime_ns is not None:
                os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(parent)


def _copy_into(source: IO[bytes], fd: int) -> None:
    try:
        in_fd = source.fileno()
    except (OSError, AttributeError, ValueError):
        in_fd = -1
    if in_fd >= 0:
        # The kernel copies (and may share extents) without the bytes passing through us.
        try:
            while os.copy_file_range(in_fd, fd, _COPY_BYTES) > 0:
                pass
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
    while chunk := source.read(_COPY_BYTES):
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
