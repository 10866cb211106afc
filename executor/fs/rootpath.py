"""Paths inside a rootfs, resolved as under chroot and never leaving it.

Shared by layer extraction, the COPY and WORKDIR commands and the sandbox's mount
points: everything that writes into a stage rootfs goes through ``resolve_dir`` (or
``resolve_path``, which also follows a symlink in the last component) and then acts
on names relative to the directory fd it returns, with O_NOFOLLOW.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from executor.errors import LayerError

__all__ = [
    "DIR_FLAGS",
    "IMPLICIT_DIR_MODE",
    "Maker",
    "clean_parts",
    "fd_parts",
    "makedirs",
    "open_root",
    "real_path",
    "resolve_dir",
    "resolve_path",
]

MAX_SYMLINK_HOPS = 40  # as Linux's own limit for one lookup
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Directories made on the way to a path get the mode Docker gives them.
IMPLICIT_DIR_MODE = 0o755

# Makes a missing component: (parent fd, name, whether it is the path's last one).
Maker = Callable[[int, str, bool], None]


def open_root(rootfs: Path) -> int:
    """An fd of the rootfs directory itself (which may be reached through a symlink)."""
    rootfs.mkdir(parents=True, exist_ok=True)
    return os.open(rootfs, DIR_FLAGS & ~os.O_NOFOLLOW)


def clean_parts(name: str) -> list[str]:
    """Path components of a member name, relative to the root; '..' may not climb out."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise LayerError("path climbs out of the rootfs")
            parts.pop()
        else:
            parts.append(part)
    return parts


def _implicit_dir(parent_fd: int, name: str, owner: tuple[int, int] | None) -> int:
    """Make a directory on the way to a path, as Docker does; return its fd."""
    os.mkdir(name, IMPLICIT_DIR_MODE, dir_fd=parent_fd)
    fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    try:
        os.fchmod(fd, IMPLICIT_DIR_MODE)  # whatever the umask
        if owner is not None:
            os.fchown(fd, *owner)
    except BaseException:
        os.close(fd)
        raise
    return fd


def resolve_dir(
    root_fd: int,
    parts: list[str],
    *,
    create: bool,
    on_component: Callable[[int, str], None] | None = None,
    owner: tuple[int, int] | None = None,
    make: Maker | None = None,
) -> int:
    """An fd of the directory ``parts`` names, resolved as under chroot(rootfs).

    Every component is opened with O_NOFOLLOW relative to the one before; a symlink
    met on the way is followed by hand, an absolute target starting again at the
    root and ``..`` stopping there, so nothing outside the root is ever reached.
    ``create`` makes missing directories (mode 0755 whatever the umask, owned by
    ``owner`` if given), or has ``make`` make them; ``on_component`` sees each
    (parent fd, name) passed through.
    """
    stack: list[int] = []
    todo = list(reversed(parts))
    hops = 0
    try:
        while todo:
            comp = todo.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if stack:
                    os.close(stack.pop())
                continue
            cur = stack[-1] if stack else root_fd
            if on_component is not None:
                on_component(cur, comp)
            try:
                fd = os.open(comp, DIR_FLAGS, dir_fd=cur)
            except FileNotFoundError:
                if not create:
                    raise
                if make is None:
                    fd = _implicit_dir(cur, comp, owner)
                else:
                    make(cur, comp, False)
                    fd = os.open(comp, DIR_FLAGS, dir_fd=cur)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if not stat.S_ISLNK(os.lstat(comp, dir_fd=cur).st_mode):
                    if not create:
                        raise NotADirectoryError(errno.ENOTDIR, "not a directory", comp) from exc
                    raise LayerError(f"parent {comp!r} is not a directory") from exc
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise LayerError("too many levels of symbolic links") from exc
                target = os.readlink(comp, dir_fd=cur)
                if target.startswith("/"):
                    # Absolute targets start again at the rootfs, as under chroot.
                    while stack:
                        os.close(stack.pop())
                todo.extend(reversed(target.split("/")))
                continue
            stack.append(fd)
        return stack.pop() if stack else os.dup(root_fd)
    finally:
        for fd in stack:
            os.close(fd)


def makedirs(rootfs: Path, path: str, *, owner: tuple[int, int] | None = None) -> None:
    """``mkdir -p`` of an absolute container path, inside the rootfs; new dirs get ``owner``."""
    root_fd = open_root(rootfs)
    try:
        os.close(resolve_dir(root_fd, clean_parts(path), create=True, owner=owner))
    finally:
        os.close(root_fd)


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def fd_parts(root_real: str, fd: int) -> list[str]:
    """The components, relative to the root (real path ``root_real``), of the
    directory ``fd`` is open on; the fd came from resolve_dir, so it is inside."""
    where = os.path.relpath(_fd_path(fd), root_real)
    return [] if where == "." else where.split("/")


def _join_inside(base: list[str], target: str) -> list[str]:
    """``target`` resolved against ``base`` (absolute: from the root); ``..`` stops at the root."""
    parts = [] if target.startswith("/") else list(base)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return parts


def resolve_path(
    root_fd: int, path: str, *, make: Maker | None = None
) -> tuple[list[str], os.stat_result]:
    """Where container path ``path`` leads under the root, as chroot would see it: its
    components relative to the root and the lstat of what is there.

    Every symlink, the last component's included, is resolved inside the root, so
    the components name no symlink. A missing component is made by ``make`` if
    given (directories on the way, then the last); else FileNotFoundError.
    """
    root_real = _fd_path(root_fd)
    parts = _join_inside([], path)
    for _ in range(MAX_SYMLINK_HOPS):
        if not parts:
            return [], os.fstat(root_fd)
        parent = resolve_dir(root_fd, parts[:-1], create=make is not None, make=make)
        try:
            base = fd_parts(root_real, parent)
            try:
                st = os.lstat(parts[-1], dir_fd=parent)
            except FileNotFoundError:
                if make is None:
                    raise
                make(parent, parts[-1], True)
                st = os.lstat(parts[-1], dir_fd=parent)
            if not stat.S_ISLNK(st.st_mode):
                return [*base, parts[-1]], st
            target = os.readlink(parts[-1], dir_fd=parent)
        finally:
            os.close(parent)
        parts = _join_inside(base, target)
    raise LayerError(f"{path}: too many levels of symbolic links")


def real_path(root: Path, path: str) -> Path:
    """The host path that container path ``path`` names under ``root``, as chroot would see it.

    Every symlink, the last component's included, is resolved inside ``root``; the
    result contains no symlink, so handing it to the kernel (a bind mount, a copy)
    cannot reach outside. Raises FileNotFoundError if it does not exist.
    """
    root_fd = open_root(root)
    try:
        parts, _ = resolve_path(root_fd, path)
        return Path(_fd_path(root_fd), *parts)
    finally:
        os.close(root_fd)
