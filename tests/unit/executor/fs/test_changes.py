"""Tests for executor/fs/changes.py: change validation and entry order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from executor.errors import LayerError
from executor.fs.changes import (
    Change,
    ChangeKind,
    EntrySource,
    plan_changes,
    sort_key,
    walk_tree,
)

ADDED = ChangeKind.ADDED_OR_MODIFIED
DELETED = ChangeKind.DELETED
OPAQUE = ChangeKind.OPAQUE_DIR


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"a", b"a/b"),  # parent before child
        (b"a/z", b"a-b"),  # a subtree stays together though "-" < "/"
        (b"B", b"a"),  # bytes, not locale order
        (b"d/.wh..wh..opq", b"d/!first"),  # opaque marker before everything
        (b"d/.wh.zz", b"d/!first"),  # whiteouts before siblings
        (b"d/.wh..wh..opq", b"d/.wh.a"),
        (b"d/.wh.a", b"d/.wh.b"),
        (b"caf\xc3\xa9", b"caf\xe9"),
    ],
)
def test_sort_key(before: bytes, after: bytes) -> None:
    assert sort_key(tuple(before.split(b"/"))) < sort_key(tuple(after.split(b"/")))


def plan(changes: list[Change]) -> list[tuple[str, EntrySource]]:
    return [(os.fsdecode(e.name), e.source) for e in plan_changes(changes)]


def test_plan_adds_parents_whiteouts_and_markers() -> None:
    changes = [
        Change("a/b/c", ADDED),
        Change("a/gone", DELETED),
        Change("o", OPAQUE),
        Change("o/new", ADDED),
    ]
    assert plan(changes) == [
        ("a", EntrySource.PARENT),
        ("a/.wh.gone", EntrySource.WHITEOUT),
        ("a/b", EntrySource.PARENT),
        ("a/b/c", EntrySource.ROOTFS),
        ("o", EntrySource.OPAQUE_DIR),
        ("o/.wh..wh..opq", EntrySource.OPAQUE_MARKER),
        ("o/new", EntrySource.ROOTFS),
    ]


@pytest.mark.parametrize(
    ("changes", "want"),
    [
        ([Change("a", ADDED), Change("a", ADDED)], [("a", EntrySource.ROOTFS)]),
        (
            [Change("a", ADDED), Change("a", OPAQUE)],
            [("a", EntrySource.OPAQUE_DIR), ("a/.wh..wh..opq", EntrySource.OPAQUE_MARKER)],
        ),
        (
            [Change("a/b", ADDED), Change("a", OPAQUE)],
            [
                ("a", EntrySource.OPAQUE_DIR),
                ("a/.wh..wh..opq", EntrySource.OPAQUE_MARKER),
                ("a/b", EntrySource.ROOTFS),
            ],
        ),
        (
            [Change("a", OPAQUE), Change("a/b", ADDED)],
            [
                ("a", EntrySource.OPAQUE_DIR),
                ("a/.wh..wh..opq", EntrySource.OPAQUE_MARKER),
                ("a/b", EntrySource.ROOTFS),
            ],
        ),
        (
            [Change("a", ADDED), Change("a/b", ADDED)],
            [("a", EntrySource.PARENT), ("a/b", EntrySource.ROOTFS)],
        ),
    ],
)
def test_plan_merges_repeated_paths(
    changes: list[Change], want: list[tuple[str, EntrySource]]
) -> None:
    assert plan(changes) == want


def test_plan_rejects_contradictions() -> None:
    with pytest.raises(LayerError, match="'a': listed as both deleted and opaque-dir"):
        plan_changes([Change("a", DELETED), Change("a", OPAQUE)])


def test_change_parts_are_filesystem_bytes() -> None:
    assert Change("caf\udce9/x", ADDED).parts == (b"caf\xe9", b"x")


def test_walk_is_sorted_and_never_follows_symlinks(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f").write_bytes(b"")
    (tmp_path / "a").symlink_to("b")
    got = [os.fsdecode(e.name) for e in walk_tree(os.fsencode(tmp_path))]
    assert got == ["a", "b", "b/f"]


def test_walk_streams_directory_by_directory(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "z").mkdir()
    entries = walk_tree(os.fsencode(tmp_path))
    assert next(entries).name == b"a"
    # "z" has not been listed yet, so what appears in it now is still seen.
    (tmp_path / "z" / "late").write_bytes(b"")
    assert [e.name for e in entries] == [b"z", b"z/late"]
