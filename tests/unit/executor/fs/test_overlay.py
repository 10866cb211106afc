"""The overlay snapshotter reads an upper dir as a step left it; no mount needed here."""

import gc
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from executor.fs.changes import ChangeKind
from executor.fs.overlay import OverlaySnapshotter

A, D = ChangeKind.ADDED_OR_MODIFIED, ChangeKind.DELETED


def _step(snap: OverlaySnapshotter, rootfs: Path) -> Path:
    """Begin a RUN step and write into its upper dir as overlayfs would."""
    snap.begin(rootfs, sandboxed=True)
    upper, work = snap.overlay_dirs()
    assert upper.is_dir() and work.is_dir()
    (upper / "etc").mkdir()
    (upper / "etc" / "hosts").write_text("new")
    if os.geteuid() != 0:
        pytest.skip("a whiteout is a 0/0 character device: mknod needs root")
    os.mknod(upper / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    return upper.parent


def test_changes_are_applied_and_the_step_dirs_removed(tmp_path: Path) -> None:
    rootfs, scratch = tmp_path / "rootfs", tmp_path / "scratch"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "gone").write_text("old")
    snap = OverlaySnapshotter(scratch)
    step_dir = _step(snap, rootfs)
    changes = {(c.path, c.kind) for c in snap.finish()}
    assert changes == {("etc", A), ("etc/hosts", A), ("gone", D)}
    assert (rootfs / "etc" / "hosts").read_text() == "new"
    assert not (rootfs / "gone").exists()
    # The step's dirs are removed off the build's path; all of it by the time the
    # snapshotter is gone.
    del snap
    gc.collect()
    assert not step_dir.exists()
    assert list(scratch.iterdir()) == []


def test_each_step_gets_fresh_dirs(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "gone").write_text("old")
    snap = OverlaySnapshotter(tmp_path / "scratch")
    first = _step(snap, rootfs)
    snap.finish()
    snap.begin(rootfs, sandboxed=True)
    upper, work = snap.overlay_dirs()
    assert upper.parent != first
    assert list(upper.iterdir()) == [] and list(work.iterdir()) == []
    assert snap.finish() == []


def test_an_opaque_directory_hides_what_was_below_it(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "d").mkdir(parents=True)
    (rootfs / "d" / "a").write_text("a")
    (rootfs / "d" / "b").write_text("b")
    snap = OverlaySnapshotter(tmp_path / "scratch")
    snap.begin(rootfs, sandboxed=True)
    upper, _ = snap.overlay_dirs()
    (upper / "d").mkdir()
    (upper / "d" / "c").write_text("c")
    if os.geteuid() != 0:
        pytest.skip("overlayfs's trusted.* marks need root")
    os.setxattr(upper / "d", "trusted.overlay.opaque", b"y")  # rm -rf /d; mkdir /d
    changes = {(c.path, c.kind) for c in snap.finish()}
    assert changes == {("d", A), ("d/c", A), ("d/a", D), ("d/b", D)}
    assert sorted(p.name for p in (rootfs / "d").iterdir()) == ["c"]
    assert os.listxattr(rootfs / "d") == []


def test_finish_reads_the_upper_dir_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One walk of the upper dir and one xattr read per directory in it: finish() is
    on the path of every RUN step."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "gone").write_text("old")
    snap = OverlaySnapshotter(tmp_path / "scratch")
    upper = _step(snap, rootfs) / "upper"
    walked: list[str] = []
    xattr_reads: list[str] = []
    real_walk, real_getxattr, real_listxattr = os.walk, os.getxattr, os.listxattr

    def walk(top: str, *args: Any, **kwargs: Any) -> Any:
        walked.append(str(top))
        return real_walk(top, *args, **kwargs)

    def getxattr(path: str, *args: Any, **kwargs: Any) -> bytes:
        if str(path).startswith(str(upper)):
            xattr_reads.append(str(path))
        return real_getxattr(path, *args, **kwargs)

    def listxattr(path: str, *args: Any, **kwargs: Any) -> list[str]:
        if str(path).startswith(str(upper)):
            xattr_reads.append(str(path))
        return real_listxattr(path, *args, **kwargs)

    monkeypatch.setattr(os, "walk", walk)
    monkeypatch.setattr(os, "getxattr", getxattr)
    monkeypatch.setattr(os, "listxattr", listxattr)
    changes = {(c.path, c.kind) for c in snap.finish()}
    assert changes == {("etc", A), ("etc/hosts", A), ("gone", D)}
    assert walked == [str(upper)]
    assert xattr_reads == [str(upper / "etc")]
