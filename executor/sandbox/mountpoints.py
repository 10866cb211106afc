"""Mount points a step needs in its rootfs, made before it runs and removed after.

A rootfs may lack /proc, /dev, /etc/hosts or a RUN --mount target. The sandbox
creates what is missing, and afterwards removes it again and restores the parent
directories' times, so the snapshot of the step sees none of it.

Targets are resolved as under chroot(rootfs), by executor.fs.rootpath: every
component is opened with O_NOFOLLOW relative to the one before, a symlink of the
image is followed by hand (an absolute target starts again at the rootfs, ``..``
stops there), so a target never leaves the rootfs. ``ensure`` returns the resolved
host path, which holds no symlink, so the kernel mounting there never follows one
of the image's.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from executor.errors import LayerError, SandboxError
from executor.fs.rootpath import fd_parts, resolve_path

_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def _fail(target: str, reason: str) -> SandboxError:
    return SandboxError(f"mount target {target}: {reason}")


@dataclass
class MountPoints:
    """Creates missing mount points under a rootfs; ``remove`` undoes exactly that."""

    rootfs: Path
    # Components made, as names relative to the rootfs (resolved, symlink-free).
    created: list[tuple[str, ...]] = field(default_factory=list)
    times: dict[tuple[str, ...], tuple[int, int]] = field(default_factory=dict)
    # Parents' mtimes once every mount point exists: if the step changes one, that
    # change is the step's and is kept (it belongs in the layer, as overlayfs keeps it).
    settled: dict[tuple[str, ...], int] = field(default_factory=dict)

    def settle(self) -> None:
        """Note the parents' times now that every mount point is made; call before the step."""
        self.settled = self._mtimes()

    def _mtimes(self) -> dict[tuple[str, ...], int]:
        found: dict[tuple[str, ...], int] = {}
        try:
            root_fd = os.open(self.rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return found
        try:
            for names in self.times:
                fd = self._open(root_fd, names)
                if fd is not None:
                    try:
                        found[names] = os.fstat(fd).st_mtime_ns
                    finally:
                        os.close(fd)
        finally:
            os.close(root_fd)
        return found

    def ensure(self, target: str, *, directory: bool) -> Path:
        """Make ``target`` (absolute, inside the container) exist; return its host path."""
        if not target.startswith("/"):
            raise _fail(target, "not an absolute path")
        try:
            root_fd = os.open(self.rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _fail(target, f"rootfs {self.rootfs}: {exc.strerror}") from exc
        try:
            real_root = os.readlink(f"/proc/self/fd/{root_fd}")

            def make(parent_fd: int, name: str, last: bool) -> None:
                names = (*fd_parts(real_root, parent_fd), name)
                self._create(parent_fd, names, directory=directory or not last)

            parts, st = resolve_path(root_fd, target, make=make)
        except LayerError as exc:
            raise _fail(target, str(exc)) from exc
        except OSError as exc:
            raise _fail(target, exc.strerror or str(exc)) from exc
        finally:
            os.close(root_fd)
        shown = "/" + "/".join(parts)
        if directory and not stat.S_ISDIR(st.st_mode):
            raise _fail(target, f"{shown} exists and is not a directory")
        if not directory and stat.S_ISDIR(st.st_mode):
            # Binding a file over a directory would fail in the kernel.
            raise _fail(target, f"{shown} is a directory")
        return Path(real_root, *parts)

    def _create(self, parent_fd: int, names: tuple[str, ...], *, directory: bool) -> None:
        parent = names[:-1]
        if parent not in self.times:
            st = os.stat(parent_fd)
            self.times[parent] = (st.st_atime_ns, st.st_mtime_ns)
        if directory:
            os.mkdir(names[-1], 0o755, dir_fd=parent_fd)
        else:
            fd = os.open(
                names[-1],
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=parent_fd,
            )
            os.close(fd)
        self.created.append(names)

    def _open(self, root_fd: int, names: tuple[str, ...]) -> int | None:
        """An O_PATH fd of ``names`` walked without following any symlink, or None."""
        fd = os.dup(root_fd)
        try:
            for name in names:
                nxt = os.open(name, _PATH_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nxt
                if stat.S_ISLNK(os.fstat(fd).st_mode):
                    os.close(fd)
                    return None
        except OSError:
            os.close(fd)
            return None
        return fd

    def remove(self) -> None:
        """Remove what ``ensure`` created (deepest first), then restore parent times.

        Paths are walked again without following symlinks: if the step replaced a
        directory made here with a symlink, nothing is removed through it.
        """
        after_step = self._mtimes()
        try:
            root_fd = os.open(self.rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            self.created.clear()
            self.times.clear()
            return
        try:
            for names in reversed(self.created):
                parent = self._open(root_fd, names[:-1])
                if parent is None:
                    continue
                try:
                    st = os.lstat(names[-1], dir_fd=parent)
                    if stat.S_ISDIR(st.st_mode):
                        os.rmdir(names[-1], dir_fd=parent)
                    else:
                        os.unlink(names[-1], dir_fd=parent)
                except OSError:
                    pass  # the step put something there: it belongs in the layer
                finally:
                    os.close(parent)
            for names, (atime, before) in sorted(self.times.items(), key=lambda kv: -len(kv[0])):
                mtime = before
                if names in after_step and after_step[names] != self.settled.get(names):
                    # The step itself changed this directory: keep the step's time.
                    mtime = after_step[names]
                fd = self._open(root_fd, names)
                if fd is None:
                    continue
                try:
                    # An O_PATH fd cannot be given to futimens; its /proc link can.
                    os.utime(f"/proc/self/fd/{fd}", ns=(atime, mtime))
                except OSError:
                    pass
                finally:
                    os.close(fd)
        finally:
            os.close(root_fd)
            self.created.clear()
            self.times.clear()
