import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from executor.fs.changes import Change, ChangeKind
from executor.fs.snapshot import WalkSnapshotter

A, D = ChangeKind.ADDED_OR_MODIFIED, ChangeKind.DELETED


def _tree(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0\n")
    (root / "var/lib/app").mkdir(parents=True)
    (root / "var/lib/app/data").write_text("d")
    (root / "var/lib/app/more").write_text("m")
    (root / "bin").mkdir()
    (root / "bin/sh").symlink_to("busybox")


def _changes(root: Path, step: object) -> set[tuple[str, ChangeKind]]:
    snap = WalkSnapshotter()
    snap.begin(root)
    step()  # type: ignore[operator]
    return {(c.path, c.kind) for c in snap.finish()}


@pytest.mark.parametrize(
    ("name", "step", "expected"),
    [
        ("nothing", lambda r: None, set()),
        (
            "new file",
            lambda r: (r / "etc/hosts").write_text("h"),
            {("etc", A), ("etc/hosts", A)},
        ),
        (
            "deleted tree reports only its top",
            lambda r: shutil.rmtree(r / "var/lib/app"),
            {("var/lib", A), ("var/lib/app", D)},
        ),
        ("chmod", lambda r: (r / "etc/passwd").chmod(0o600), {("etc/passwd", A)}),
        (
            "symlink retargeted",
            lambda r: ((r / "bin/sh").unlink(), (r / "bin/sh").symlink_to("dash")),
            {("bin", A), ("bin/sh", A)},
        ),
        (
            "dir removed and made again whites out what is gone",
            lambda r: (
                shutil.rmtree(r / "var/lib/app"),  # type: ignore[func-returns-value]
                (r / "var/lib/app").mkdir(),
                (r / "var/lib/app/new").write_text("n"),
            ),
            {
                ("var/lib", A),
                ("var/lib/app", A),
                ("var/lib/app/new", A),
                ("var/lib/app/data", D),
                ("var/lib/app/more", D),
            },
        ),
    ],
)
def test_walk_finds_exactly_the_changes(
    tmp_path: Path, name: str, step: object, expected: set[tuple[str, ChangeKind]]
) -> None:
    _tree(tmp_path)
    # Directory mtimes are only nanosecond-precise on some filesystems; make them differ.
    os.utime(tmp_path / "etc", ns=(0, 0))
    os.utime(tmp_path / "var/lib", ns=(0, 0))
    os.utime(tmp_path / "bin", ns=(0, 0))
    assert _changes(tmp_path, lambda: step(tmp_path)) == expected  # type: ignore[operator]


def test_content_change_with_same_size_is_seen_through_mtime(tmp_path: Path) -> None:
    _tree(tmp_path)
    path = tmp_path / "etc/passwd"
    os.utime(path, ns=(0, 0))
    assert _changes(tmp_path, lambda: path.write_text("ROOT:x:0:0\n")) == {("etc/passwd", A)}


def test_the_finish_walk_is_the_next_baseline(tmp_path: Path) -> None:
    _tree(tmp_path)
    snap = WalkSnapshotter(ignore=["/etc"])
    snap.begin(tmp_path)
    (tmp_path / "new").write_text("1")
    (tmp_path / "etc/ignored").write_text("x")
    assert snap.finish() == [Change("new", A)]
    snap.begin(tmp_path)
    assert snap.finish() == []


def test_same_size_rewrite_with_mtime_restored_is_seen(tmp_path: Path) -> None:
    _tree(tmp_path)
    path = tmp_path / "etc/passwd"
    before = path.stat()

    def rewrite() -> None:
        path.write_text("toot:x:0:0\n")  # same size
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert _changes(tmp_path, rewrite) == {("etc/passwd", A)}


@pytest.mark.parametrize(
    ("path", "step"),
    [
        ("etc/passwd", lambda p: os.setxattr(p, "user.mark", b"v")),
        # A directory's ctime is not compared (the sandbox's mount points change it),
        # its xattrs are.
        ("var/lib", lambda p: os.setxattr(p, "user.mark", b"v")),
        ("var/lib/app", lambda p: os.setxattr(p, "user.old", b"new value")),
        ("var/lib/app", lambda p: os.removexattr(p, "user.old")),
    ],
    ids=["file", "directory", "directory value changed", "directory xattr removed"],
)
def test_xattr_only_change_is_seen(tmp_path: Path, path: str, step: Callable[[Path], None]) -> None:
    _tree(tmp_path)
    try:
        os.setxattr(tmp_path / "var/lib/app", "user.old", b"old value")
    except OSError:
        pytest.skip("this filesystem refuses user xattrs")
    assert _changes(tmp_path, lambda: step(tmp_path / path)) == {(path, A)}


def _remove_sibling_trees(root: Path) -> None:
    shutil.rmtree(root / "a/b")
    shutil.rmtree(root / "a/b-x")


def _replace_dir_by_file(root: Path) -> None:
    shutil.rmtree(root / "a/b")
    (root / "a/b").write_text("f")


def _replace_file_by_dir(root: Path) -> None:
    (root / "a/f").unlink()
    (root / "a/f").mkdir()
    (root / "a/f/g").write_text("g")


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        # "a/b-x" sorts between "a/b" and "a/b/c": a flat sorted walk reported "a/b/c"
        # too, and its whiteout needed the removed "a/b" as a parent.
        (_remove_sibling_trees, {("a", A), ("a/b", D), ("a/b-x", D)}),
        # The file replaces the whole tree; a whiteout below it could not be written.
        (_replace_dir_by_file, {("a", A), ("a/b", A)}),
        (_replace_file_by_dir, {("a", A), ("a/f", A), ("a/f/g", A)}),
    ],
)
def test_removed_trees_are_reported_by_their_top_only(
    tmp_path: Path, step: Callable[[Path], None], expected: set[tuple[str, ChangeKind]]
) -> None:
    (tmp_path / "a/b/sub").mkdir(parents=True)
    (tmp_path / "a/b/c").write_text("c")
    (tmp_path / "a/b/sub/d").write_text("d")
    (tmp_path / "a/b-x").mkdir()
    (tmp_path / "a/b-x/y").write_text("y")
    (tmp_path / "a/f").write_text("f")
    os.utime(tmp_path / "a", ns=(0, 0))
    assert _changes(tmp_path, lambda: step(tmp_path)) == expected


def test_an_ignored_path_below_the_root_is_neither_reported_nor_walked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path)
    os.utime(tmp_path / "var/lib", ns=(0, 0))
    opened: list[str] = []
    real_open = os.open

    def recording_open(path: str, flags: int, *args: Any, **kwargs: Any) -> int:
        opened.append(str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    snap = WalkSnapshotter(ignore=["/var/lib/app/"])
    snap.begin(tmp_path)
    (tmp_path / "var/lib/app/new").write_text("n")
    (tmp_path / "var/lib/other").write_text("o")
    assert snap.finish() == [Change("var/lib", A), Change("var/lib/other", A)]
    assert "var/lib" in opened  # the walk lists directories through os.open
    assert not [p for p in opened if p.startswith("var/lib/app")]


def test_a_removed_hard_link_leaves_the_other_name_unchanged(tmp_path: Path) -> None:
    _tree(tmp_path)
    os.link(tmp_path / "etc/passwd", tmp_path / "var/lib/app/passwd")
    os.utime(tmp_path / "var/lib/app", ns=(0, 0))
    changes = _changes(tmp_path, (tmp_path / "var/lib/app/passwd").unlink)
    assert changes == {("var/lib/app", A), ("var/lib/app/passwd", D)}
