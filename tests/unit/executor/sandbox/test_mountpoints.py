"""Mount points made under a rootfs, resolved as under chroot, and removed again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from executor.errors import SandboxError
from executor.sandbox.mountpoints import MountPoints


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").write_text("image's own\n")
    (root / "bin").mkdir()
    (root / "bin" / "sh").write_text("")
    (root / "usr" / "share").mkdir(parents=True)
    (root / "abs").symlink_to(tmp_path / "outside")  # a host path: taken inside the rootfs
    (root / "up").symlink_to("../../../usr")  # '..' stops at the root
    (root / "etc" / "resolv.conf").symlink_to("/run/resolv/stub.conf")
    (root / "loop").symlink_to("loop")
    (tmp_path / "outside").mkdir()
    return root


@pytest.mark.parametrize(
    ("target", "directory", "resolved"),
    [
        ("/proc", True, "proc"),
        ("/run/secrets/token", False, "run/secrets/token"),
        ("/etc/hosts", False, "etc/hosts"),
        ("/usr/share", True, "usr/share"),
        ("/abs/x", True, "{outside}/x"),
        ("/up/share/y", True, "usr/share/y"),
        ("/etc/resolv.conf", False, "run/resolv/stub.conf"),
        ("/etc/./../etc//hosts", False, "etc/hosts"),
    ],
)
def test_a_target_is_made_inside_and_removed_after(
    rootfs: Path, tmp_path: Path, target: str, directory: bool, resolved: str
) -> None:
    before = _tree(rootfs)
    etc_times = (rootfs / "etc").stat().st_mtime_ns
    points = MountPoints(rootfs)
    where = points.ensure(target, directory=directory)
    outside = str(tmp_path / "outside").lstrip("/")
    assert where == rootfs / resolved.format(outside=outside)
    assert where.is_dir() if directory else where.is_file()
    points.settle()
    points.remove()
    assert _tree(rootfs) == before
    assert (rootfs / "etc").stat().st_mtime_ns == etc_times
    assert list((tmp_path / "outside").iterdir()) == []


@pytest.mark.parametrize(
    ("target", "directory", "problem"),
    [
        ("/bin/sh/x", True, "not a directory"),
        ("/bin/sh", True, "/bin/sh exists and is not a directory"),
        ("/usr", False, "/usr is a directory"),
        ("/loop/x", True, "too many levels of symbolic links"),
        ("relative", True, "not an absolute path"),
    ],
)
def test_a_target_that_cannot_be_a_mount_point_is_refused(
    rootfs: Path, target: str, directory: bool, problem: str
) -> None:
    before = _tree(rootfs)
    points = MountPoints(rootfs)
    with pytest.raises(SandboxError) as caught:
        points.ensure(target, directory=directory)
    assert str(caught.value).startswith(f"mount target {target}: ")
    assert problem in str(caught.value)
    points.remove()
    assert _tree(rootfs) == before


def test_a_change_the_step_made_to_a_parent_is_kept(rootfs: Path) -> None:
    points = MountPoints(rootfs)
    points.ensure("/etc/mnt", directory=True)
    points.settle()
    (rootfs / "etc" / "made-by-step").write_text("")
    stepped = (rootfs / "etc").stat().st_mtime_ns
    points.remove()
    assert not (rootfs / "etc" / "mnt").exists()
    assert (rootfs / "etc").stat().st_mtime_ns == stepped
    assert os.path.exists(rootfs / "etc" / "made-by-step")
