"""Snapshotters: what a step changed in a stage rootfs, as a list of Changes.

``WalkSnapshotter`` keeps a stat cache of the whole tree. ``begin`` records it;
``finish`` walks again and compares: a path that is new, gone, or whose type,
mode, owner, size, mtime, link target or inode differs is a change, and for
everything but directories the ctime too, which no program can set back: it
catches a same-size rewrite with its mtime restored (``cp -p``, ``touch -r``) and
xattr-only changes (``setcap``). Directories are compared without ctime because
the sandbox restores their times after removing its mount points. Nothing is
hashed, so an unchanged tree costs one ``lstat`` per path. The walk after a step is
the baseline for the next one.

A directory removed and made again is not marked opaque: inode numbers are reused
at once on most filesystems, so "made again" cannot be told reliably. Its lower
entries that are gone get one whiteout each instead, which the overlay snapshotter
produces too, so both give the same layer for the same change.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from executor.fs.changes import Change, ChangeKind


@dataclass(frozen=True, slots=True)
class _Stat:
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ino: int
    link: str | None
    ctime_ns: int
    nlink: int


Tree = dict[str, _Stat]


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
    """Every path under rootfs (relative, POSIX) with the stat fields that matter."""
    tree: Tree = {}
    stack = [("", os.fspath(rootfs))]
    while stack:
        rel_dir, abs_dir = stack.pop()
        try:
            entries = os.scandir(abs_dir)
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if rel in ignore:
                    continue
                st = entry.stat(follow_symlinks=False)
                link = os.readlink(entry.path) if stat.S_ISLNK(st.st_mode) else None
                tree[rel] = _Stat(
                    st.st_mode,
                    st.st_uid,
                    st.st_gid,
                    st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                    st.st_mtime_ns,
                    st.st_ino,
                    link,
                    0 if stat.S_ISDIR(st.st_mode) else st.st_ctime_ns,
                    0 if stat.S_ISDIR(st.st_mode) else st.st_nlink,
                )
                if stat.S_ISDIR(st.st_mode):
                    stack.append((rel, entry.path))
    return tree


def _changed(old: _Stat | None, new: _Stat) -> bool:
    if old is None or old == new:
        return old is None
    # Removing another hard link to a file bumps its ctime and lowers its link count
    # and nothing else: the file is unchanged, and overlayfs does not copy it up. A new
    # link does make overlayfs copy the file up, so both names reach the layer.
    only_unlinked = (
        new.nlink < old.nlink and replace(old, ctime_ns=new.ctime_ns, nlink=new.nlink) == new
    )
    return not only_unlinked


def diff_trees(before: Tree, after: Tree) -> list[Change]:
    """The changes that turn ``before`` into ``after``."""
    changes = [
        Change(path, ChangeKind.ADDED_OR_MODIFIED)
        for path, new in after.items()
        if _changed(before.get(path), new)
    ]
    covered: str | None = None
    for path in sorted(p for p in before if p not in after):
        # Under a deleted directory, the directory's whiteout covers everything.
        if covered is not None and path.startswith(covered):
            continue
        changes.append(Change(path, ChangeKind.DELETED))
        covered = f"{path}/"
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
