"""Snapshotters: what a step changed in a stage rootfs, as a list of Changes.

``WalkSnapshotter`` keeps a stat cache of the whole tree. ``begin`` records it;
``finish`` walks again and compares: a path that is new, gone, or whose type,
mode, owner, size, mtime, link target or inode differs is a change, and for
everything but directories the ctime too, which no program can set back: it
catches a same-size rewrite with its mtime restored (``cp -p``, ``touch -r``) and
xattr-only changes (``setcap``). Directories are compared without ctime because
the sandbox restores their times after removing its mount points; their xattrs
are compared instead, read from the descriptor the walk lists them through.
Nothing is hashed, so an unchanged tree costs one ``lstat`` per path and one
``listxattr`` per directory. The walk after a step is the baseline for the next one.

A directory removed and made again is not marked opaque: inode numbers are reused
at once on most filesystems, so "made again" cannot be told reliably. Its lower
entries that are gone get one whiteout each instead, which the overlay snapshotter
produces too, so both give the same layer for the same change.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path
from stat import S_ISDIR, S_ISLNK
from typing import Protocol

from executor.fs.changes import Change, ChangeKind
from executor.fs.rootpath import DIR_FLAGS

# The rootfs may be reached through a symlink; nothing below it is followed.
_ROOT_FLAGS = DIR_FLAGS & ~os.O_NOFOLLOW


# A directory's own xattrs, (name, value) sorted by name.
_Xattrs = tuple[tuple[str, bytes], ...]
# What a path is compared by: (mode, uid, gid, size, mtime_ns, ino, link target or a
# directory's xattrs, ctime_ns, nlink); a directory's size, ctime and nlink are 0
# (see the module notes). A plain tuple: a dataclass per path costs more than the
# lstat behind it.
_Stat = tuple[int, int, int, int, int, int, str | _Xattrs | None, int, int]
# One directory's entries, name -> stat; and a tree: directory ("" is the root) -> entries.
Listing = dict[str, _Stat]
Tree = dict[str, Listing]


class Snapshotter(Protocol):
    """Finds what changed in a rootfs between ``begin`` and ``finish``."""

    name: str

    def begin(self, rootfs: Path, *, sandboxed: bool = False) -> None:
        """Start watching ``rootfs``; ``sandboxed``: the step writes only through the sandbox."""
        ...

    def finish(self) -> list[Change]: ...

    def overlay_dirs(self) -> tuple[Path, Path] | None:
        """Upper and work dirs for a RUN step to write through, or None (walk)."""
        ...


def _scan(rootfs: Path, ignore: frozenset[str]) -> Tree:
    """Every directory under rootfs (relative, POSIX) with the stat fields of its entries."""
    skip: dict[str, frozenset[str]] = {}
    for path in ignore:
        parent, _, name = path.rpartition("/")
        skip[parent] = skip.get(parent, frozenset()) | {name}
    try:
        root_fd = os.open(rootfs, _ROOT_FLAGS)
    except FileNotFoundError:
        return {}
    tree: Tree = {}
    try:
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            found = _list(root_fd, rel_dir, skip.get(rel_dir), stack)
            if found is None:
                continue
            tree[rel_dir], xattrs = found
            if xattrs:
                # Its parent was listed first; the root's own xattrs are in no layer.
                parent, _, name = rel_dir.rpartition("/")
                st = tree[parent][name]
                tree[parent][name] = (*st[:6], xattrs, 0, 0)
    finally:
        os.close(root_fd)
    return tree


def _list(
    root_fd: int, rel_dir: str, skip: frozenset[str] | None, subdirs: list[str]
) -> tuple[Listing, _Xattrs] | None:
    """Stat every entry of one directory but ``skip``; push its subdirectories on ``subdirs``.
    Returns the entries and the directory's own xattrs.

    The inner loop of every snapshot: one lstat per entry (relative to the open
    directory, so the kernel does not walk the path again) and one tuple.
    """
    try:
        fd = os.open(rel_dir or ".", DIR_FLAGS, dir_fd=root_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None  # gone since its parent was listed
    listing: Listing = {}
    prefix = f"{rel_dir}/" if rel_dir else ""
    try:
        xattrs = _xattrs(fd) if rel_dir else ()
        with os.scandir(fd) as entries:
            for entry in entries:
                name = entry.name
                if skip is not None and name in skip:
                    continue
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                if S_ISDIR(mode):
                    listing[name] = (
                        mode, st.st_uid, st.st_gid, 0, st.st_mtime_ns, st.st_ino, None, 0, 0
                    )  # fmt: skip
                    subdirs.append(prefix + name)
                else:
                    listing[name] = (
                        mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ino,
                        os.readlink(name, dir_fd=fd) if S_ISLNK(mode) else None,
                        st.st_ctime_ns, st.st_nlink,
                    )  # fmt: skip
    finally:
        os.close(fd)
    return listing, xattrs


def _xattrs(fd: int) -> _Xattrs:
    """An open directory's xattrs; none where the filesystem keeps none."""
    try:
        names = os.listxattr(fd)
    except OSError as exc:
        if exc.errno != errno.EOPNOTSUPP:
            raise
        return ()
    if not names:
        return ()  # nearly every directory: no generator, no sort
    return tuple((name, os.getxattr(fd, name)) for name in sorted(names))


def _changed(old: _Stat | None, new: _Stat) -> bool:
    if old is None or old == new:
        return old is None
    # Removing another hard link to a file bumps its ctime and lowers its link count
    # and nothing else: the file is unchanged, and overlayfs does not copy it up. A new
    # link does make overlayfs copy the file up, so both names reach the layer.
    return not (new[8] < old[8] and old[:7] == new[:7])  # nlink lower, all before ctime equal


def diff_trees(before: Tree, after: Tree) -> list[Change]:
    """The changes that turn ``before`` into ``after``.

    A directory whose entries all compare equal costs one dict comparison. Only
    the topmost path of a removed subtree is reported: its whiteout covers the
    rest. Nothing is reported below a directory that is no longer one (removed,
    or replaced by a file): the new entry replaces the whole subtree.
    """
    changes: list[Change] = []
    deleted: list[str] = []
    for rel_dir, listing in after.items():
        old = before.get(rel_dir)
        if old == listing:
            continue
        prefix = f"{rel_dir}/" if rel_dir else ""
        if old is None:
            changes.extend(Change(prefix + name, ChangeKind.ADDED_OR_MODIFIED) for name in listing)
            continue
        changes.extend(
            Change(prefix + name, ChangeKind.ADDED_OR_MODIFIED)
            for name, new in listing.items()
            if _changed(old.get(name), new)
        )
        deleted.extend(prefix + name for name in old if name not in listing)
    changes.extend(Change(path, ChangeKind.DELETED) for path in sorted(deleted))
    return changes


class WalkSnapshotter:
    """Stat-cache snapshots that work on any filesystem, with no privileges."""

    name = "walk"

    def __init__(self, ignore: Iterable[str] = ()) -> None:
        self._ignore = frozenset(p.strip("/") for p in ignore)
        self._rootfs: Path | None = None
        self._baseline: Tree | None = None

    def overlay_dirs(self) -> tuple[Path, Path] | None:
        return None

    def begin(self, rootfs: Path, *, sandboxed: bool = False) -> None:
        if self._rootfs != rootfs or self._baseline is None:
            self._rootfs = rootfs
            self._baseline = _scan(rootfs, self._ignore)

    def finish(self) -> list[Change]:
        if self._rootfs is None or self._baseline is None:
            raise RuntimeError("finish() before begin()")
        after = _scan(self._rootfs, self._ignore)
        changes = diff_trees(self._baseline, after)
        self._baseline = after
        return changes
