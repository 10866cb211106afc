"""Filesystem changes, and the ordered list of tar entries a layer is made of.

A :class:`Change` names one path relative to the rootfs, never a subtree: a
snapshotter lists every added path, a directory and each thing in it alike.

Entries come out parents first and sorted name by name on raw bytes, which is the
order of a sorted directory walk (Go's filepath.Walk: "in lexical order"), so a
directory's subtree stays together and a whole tree can be streamed; with one
exception from image-spec layer.md "Whiteouts": "whiteout files appear before
sibling directory entries", so in each directory the opaque marker comes first,
then the ``.wh.`` whiteouts, then everything else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from executor.errors import LayerError

__all__ = [
    "OPAQUE_MARKER",
    "WHITEOUT_PREFIX",
    "Change",
    "ChangeKind",
    "EntrySource",
    "PlannedEntry",
    "plan_changes",
    "sort_key",
    "walk_tree",
]

# image-spec layer.md "Whiteouts" and "Opaque Whiteout".
WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"

# Sort ranks inside one directory: opaque marker, whiteouts, then the rest.
_RANK_OPAQUE = 0
_RANK_WHITEOUT = 1
_RANK_OTHER = 2

Parts = tuple[bytes, ...]
SortKey = tuple[tuple[int, bytes], ...]


class ChangeKind(Enum):
    """What happened to a path since the lower layers."""

    ADDED_OR_MODIFIED = "added-or-modified"
    DELETED = "deleted"
    # A directory whose lower contents were all hidden (rm -rf d && mkdir d).
    OPAQUE_DIR = "opaque-dir"


@dataclass(frozen=True)
class Change:
    """One changed path: relative, POSIX, normalised (``a/b``, never ``./a`` or ``a/``)."""

    path: str
    kind: ChangeKind

    def __post_init__(self) -> None:
        parts = self.path.split("/")
        if self.path.startswith("/"):
            problem = "an absolute path"
        elif any(part == ".." for part in parts):
            problem = "'..' leaves the rootfs"
        elif any(part in ("", ".") for part in parts):
            problem = "not a normalised relative path"
        elif "\x00" in self.path:
            problem = "a NUL byte"
        elif any(os.fsencode(part).startswith(WHITEOUT_PREFIX) for part in parts):
            problem = "names starting with .wh. are reserved for whiteouts"
        else:
            return
        raise LayerError(f"change {self.path!r} ({self.kind.value}): {problem}")

    @property
    def parts(self) -> Parts:
        """The path's components as filesystem bytes."""
        return tuple(os.fsencode(part) for part in self.path.split("/"))


class EntrySource(Enum):
    """Where an entry's header and content come from."""

    ROOTFS = "rootfs"  # lstat the path in the rootfs
    PARENT = "parent"  # the same, and it must be a directory
    OPAQUE_DIR = "opaque-dir"  # the same, and it must be a directory
    WHITEOUT = "whiteout"  # an empty marker; the whited-out path must be gone
    OPAQUE_MARKER = "opaque-marker"  # an empty marker


@dataclass(frozen=True)
class PlannedEntry:
    """One tar entry to write: its path components and where it comes from."""

    parts: Parts
    source: EntrySource

    @property
    def name(self) -> bytes:
        return b"/".join(self.parts)


def sort_key(parts: Parts) -> SortKey:
    """Parents before children; per directory: opaque marker, whiteouts, the rest by bytes."""
    return tuple((_rank(part), part) for part in parts)


def _rank(name: bytes) -> int:
    if name == OPAQUE_MARKER:
        return _RANK_OPAQUE
    if name.startswith(WHITEOUT_PREFIX):
        return _RANK_WHITEOUT
    return _RANK_OTHER


def plan_changes(changes: Iterable[Change]) -> list[PlannedEntry]:
    """The entries for a change list: changed paths, their parents, and markers, in order."""
    kinds: dict[Parts, ChangeKind] = {}
    for change in changes:
        parts = change.parts
        seen = kinds.get(parts)
        kinds[parts] = change.kind if seen is None else _merge(change, seen)
    sources: dict[Parts, EntrySource] = {}
    for parts, kind in kinds.items():
        for depth in range(1, len(parts)):
            # A parent listed as changed keeps ROOTFS only if it is not also needed
            # as a directory; PARENT checks the same lstat and more.
            if sources.get(parts[:depth]) is not EntrySource.OPAQUE_DIR:
                sources[parts[:depth]] = EntrySource.PARENT
        if kind is ChangeKind.DELETED:
            sources[(*parts[:-1], WHITEOUT_PREFIX + parts[-1])] = EntrySource.WHITEOUT
        elif kind is ChangeKind.OPAQUE_DIR:
            sources[parts] = EntrySource.OPAQUE_DIR
            sources[(*parts, OPAQUE_MARKER)] = EntrySource.OPAQUE_MARKER
        else:
            sources.setdefault(parts, EntrySource.ROOTFS)
    ordered = sorted(sources, key=sort_key)
    return [PlannedEntry(parts, sources[parts]) for parts in ordered]


def _merge(change: Change, seen: ChangeKind) -> ChangeKind:
    """Two changes for one path: the same twice, or an opaque dir that was also modified."""
    pair = {change.kind, seen}
    if len(pair) == 1:
        return seen
    if pair == {ChangeKind.ADDED_OR_MODIFIED, ChangeKind.OPAQUE_DIR}:
        return ChangeKind.OPAQUE_DIR
    raise LayerError(f"change {change.path!r}: listed as both {seen.value} and {change.kind.value}")


def walk_tree(root: bytes) -> Iterator[PlannedEntry]:
    """Every path under ``root`` in entry order, streamed (never the whole list in memory).

    Symbolic links are entries, never followed. A directory's listing is held
    only while it is being walked.
    """
    stack: list[Iterator[tuple[Parts, bool]]] = [_children(root, ())]
    while stack:
        step = next(stack[-1], None)
        if step is None:
            stack.pop()
            continue
        parts, is_dir = step
        yield PlannedEntry(parts, EntrySource.ROOTFS)
        if is_dir:
            stack.append(_children(root, parts))


def _children(root: bytes, parts: Parts) -> Iterator[tuple[Parts, bool]]:
    path = os.path.join(root, *parts)
    try:
        with os.scandir(path) as entries:
            found = [(entry.name, _is_real_dir(entry)) for entry in entries]
    except OSError as exc:
        raise LayerError(f"listing {_display(path)}: {exc.strerror or exc}") from exc
    found.sort(key=lambda item: (_rank(item[0]), item[0]))
    for name, is_dir in found:
        if name.startswith(WHITEOUT_PREFIX):
            # Written as-is it would delete lower files when the layer is applied.
            raise LayerError(
                f"{_display(os.path.join(path, name))}: names starting with .wh. "
                "are reserved for whiteouts (image-spec layer.md)"
            )
        yield (*parts, name), is_dir


def _is_real_dir(entry: os.DirEntry[bytes]) -> bool:
    try:
        # d_type from getdents: no extra system call on the filesystems we meet.
        return entry.is_dir(follow_symlinks=False)
    except OSError as exc:
        raise LayerError(f"reading {_display(entry.path)}: {exc.strerror or exc}") from exc


def _display(path: bytes) -> str:
    # Not os.fsdecode: lone surrogates from non-UTF-8 names break strict log handlers.
    return path.decode("utf-8", "backslashreplace")
