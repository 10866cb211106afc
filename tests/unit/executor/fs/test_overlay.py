"""The overlay snapshotter reads an upper dir as a step left it; no mount needed here."""

import gc
import os
import stat
from pathlib import Path

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
