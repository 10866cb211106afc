"""The overlay snapshotter reads an upper dir as a step left it; no mount needed here."""

import gc
import os
import stat
from collections.abc import Callable
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


# What overlayfs (mounted with userxattr) leaves on an entry it copied up.
_ORIGIN = {"user.overlay.origin": b"\x00\xfb\x1d\x00\x01"}


def _set(path: Path, xattrs: dict[str, bytes], *, mode: int = 0o755, mtime: int = 10**18) -> None:
    for name, value in xattrs.items():
        os.setxattr(path, name, value)
    path.chmod(mode)
    os.utime(path, ns=(mtime, mtime))


def _new_dirs(rootfs: Path, upper: Path) -> None:
    """mkdir -p /new/sub; setfattr on both."""
    (upper / "new" / "sub").mkdir(parents=True)
    _set(upper / "new" / "sub", {"user.b": b"2"})
    _set(upper / "new", {"user.a": b"1"})


def _image_dir_xattrs(rootfs: Path, upper: Path) -> None:
    """setfattr -n user.new, -n user.changed and -x user.gone on an image directory."""
    (rootfs / "d").mkdir()
    _set(rootfs / "d", {"user.keep": b"k", "user.changed": b"old", "user.gone": b"g"})
    (upper / "d").mkdir()
    _set(upper / "d", {"user.keep": b"k", "user.changed": b"new", "user.new": b"n", **_ORIGIN})


def _image_dir_chmod_touch(rootfs: Path, upper: Path) -> None:
    """chmod 700 /d; touch -d @0 /d, on an image directory: its content is the same."""
    (rootfs / "d").mkdir()
    _set(rootfs / "d", {"user.keep": b"k"})
    (upper / "d").mkdir()
    _set(upper / "d", {"user.keep": b"k", **_ORIGIN}, mode=0o700, mtime=0)


def _image_file_xattr(rootfs: Path, upper: Path) -> None:
    """setfattr -n user.f on an image file."""
    (rootfs / "d").mkdir()
    (rootfs / "d" / "f").write_text("f")
    _set(rootfs / "d", {})
    (upper / "d").mkdir()
    (upper / "d" / "f").write_text("f")
    _set(upper / "d" / "f", {"user.f": b"v", **_ORIGIN}, mode=0o644)
    _set(upper / "d", {**_ORIGIN})


Meta = tuple[int, int, dict[str, bytes]]


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            _new_dirs,
            {
                "new": (0o755, 10**18, {"user.a": b"1"}),
                "new/sub": (0o755, 10**18, {"user.b": b"2"}),
            },
        ),
        (
            _image_dir_xattrs,
            {"d": (0o755, 10**18, {"user.keep": b"k", "user.changed": b"new", "user.new": b"n"})},
        ),
        (_image_dir_chmod_touch, {"d": (0o700, 0, {"user.keep": b"k"})}),
        (
            _image_file_xattr,
            {"d": (0o755, 10**18, {}), "d/f": (0o644, 10**18, {"user.f": b"v"})},
        ),
    ],
)
def test_the_rootfs_gets_each_entrys_metadata_but_overlayfs_own(
    tmp_path: Path, step: Callable[[Path, Path], None], expected: dict[str, Meta]
) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    try:
        os.setxattr(rootfs, "user.probe", b"1")
        os.removexattr(rootfs, "user.probe")
    except OSError:
        pytest.skip("this filesystem refuses user xattrs")
    snap = OverlaySnapshotter(tmp_path / "scratch")
    snap.begin(rootfs, sandboxed=True)
    upper, _ = snap.overlay_dirs()
    step(rootfs, upper)
    assert {c.path for c in snap.finish()} == set(expected)
    found = {}
    for rel in expected:
        st = os.lstat(rootfs / rel)
        xattrs = {name: os.getxattr(rootfs / rel, name) for name in os.listxattr(rootfs / rel)}
        found[rel] = (stat.S_IMODE(st.st_mode), st.st_mtime_ns, xattrs)
    assert found == expected
