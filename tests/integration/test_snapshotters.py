"""The walk and overlay snapshotters make the same layers for the same steps.

Every Dockerfile of tests/buildah_cases, plus one written to stress deletions,
opaque directories, hard links, type changes (a symlink to a host path replaced by
a directory), chmod and touch of a directory, and xattrs, is built reproducibly with
each snapshotter (and the overlay under both namespace sandboxes): the digests of
the images must be equal, so every layer is byte for byte the same.

busybox has no setfattr, so metadata-only steps (xattrs, chmod, touch of a
directory) are Python functions instead: each runs once on a rootfs under the walk
snapshotter and once under the overlay snapshotter, through a real overlayfs
mounted with each sandbox's options; the layers and the rootfs afterwards must be
the same.
"""

from __future__ import annotations

import os
import shutil
import stat
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from executor.fs.changes import Change
from executor.fs.layer import LayerOptions, write_layer
from executor.fs.overlay import OverlaySnapshotter
from executor.fs.snapshot import WalkSnapshotter
from executor.sandbox.enter import CLONE_NEWNS, MS_PRIVATE, MS_REC, _mount_overlay, mount, unshare
from tests.integration.test_build import farm, write_context
from tests.support.images import PushedImage

CASES = Path(__file__).parent.parent / "buildah_cases"

STRESS = """
ARG BASE
FROM ${BASE}
RUN mkdir -p /d/sub /keep && echo 1 > /d/a && echo 2 > /d/sub/b && echo k > /keep/k \\
    && ln /keep/k /keep/hard && ln -s k /keep/soft && mkfifo /keep/fifo
RUN rm -rf /d && mkdir /d && echo 3 > /d/c
RUN rm /keep/hard && rm -rf /d/c && mkdir /d/c && echo x > /keep/soft-target \\
    && rm /keep/soft && ln -s soft-target /keep/soft
RUN echo "same size" > /keep/k && touch -d @0 /keep/k && chmod 600 /keep/k
RUN mkdir -p /opt/x/y && echo o > /opt/x/y/z \\
    && rm -rf /opt/x && mkdir -p /opt/x && echo n > /opt/x/new
RUN chmod 700 /keep && touch -d @86400 /opt
RUN ln -s /usr/share /sharelink
RUN rm /sharelink && mkdir /sharelink && echo s > /sharelink/s
RUN true
"""


def _digest(context: Path, base: str, mode: str, sandbox: str, workspace: Path) -> str:
    result = farm(
        "build", "--context", str(context), "--build-arg", f"BASE={base}", "--no-push",
        "--reproducible", "--snapshot-mode", mode, "--sandbox", sandbox,
        "--workspace", str(workspace), "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("case", ["stress", *sorted(p.name for p in CASES.iterdir() if p.is_dir())])
def test_walk_and_overlay_make_the_same_image(
    case: str, busybox_image: PushedImage, tmp_path: Path
) -> None:
    context = tmp_path / "context"
    if case == "stress":
        write_context(context, STRESS)
    else:
        shutil.copytree(CASES / case, context, symlinks=True)
    base = busybox_image.reference
    walk = _digest(context, base, "walk", "chroot", tmp_path / "ws-walk")
    overlay = _digest(context, base, "overlay", "chroot", tmp_path / "ws-overlay")
    assert overlay == walk
    if case == "stress":
        rootless = _digest(context, base, "overlay", "userns", tmp_path / "ws-userns")
        assert rootless == walk


def test_overlay_needs_a_namespace_sandbox(tmp_path: Path) -> None:
    context = write_context(tmp_path / "ctx", "FROM scratch\n")
    result = farm(
        "build", "--context", str(context), "--no-push",
        "--snapshot-mode", "overlay", "--sandbox", "proot",
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        "--snapshot-mode=overlay does not work here: the proot sandbox cannot mount overlayfs"
        in (result.stderr)
    )


# A fixed time for what a step makes, so both runs of it agree.
_MTIME = 10**18
# A file capability (cap_net_raw+ep), as setcap writes it.
_CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")


def _image(root: Path) -> None:
    """A small rootfs: an image directory with xattrs, one without, a file."""
    (root / "keep").mkdir(parents=True)
    (root / "plain").mkdir()
    (root / "plain" / "file").write_text("f")
    os.setxattr(root / "keep", "user.keep", b"k")
    os.setxattr(root / "keep", "user.gone", b"g")
    for path in (root / "keep", root / "plain", root / "plain" / "file"):
        os.utime(path, ns=(_MTIME, _MTIME))


def _new_dirs(root: Path) -> None:
    (root / "new" / "sub").mkdir(parents=True)
    for path, value in ((root / "new" / "sub", b"s"), (root / "new", b"n")):
        os.setxattr(path, "user.made", value)
        os.utime(path, ns=(_MTIME, _MTIME))


def _image_dir_xattrs(root: Path) -> None:
    os.setxattr(root / "keep", "user.new", b"n")
    os.setxattr(root / "keep", "user.keep", b"changed")
    os.removexattr(root / "keep", "user.gone")


def _image_file_xattrs(root: Path) -> None:
    os.setxattr(root / "plain" / "file", "user.f", b"v")
    os.setxattr(root / "plain" / "file", "security.capability", _CAP_NET_RAW)


METADATA_STEPS: dict[str, tuple[Callable[[Path], None], set[str]]] = {
    "xattrs on new directories": (_new_dirs, {"new", "new/sub"}),
    "xattrs of an image directory": (_image_dir_xattrs, {"keep"}),
    "xattrs of an image file": (_image_file_xattrs, {"plain/file"}),
    "chmod of an image directory": (lambda root: (root / "keep").chmod(0o700), {"keep"}),
    "touch of an image directory": (lambda root: os.utime(root / "plain", ns=(0, 0)), {"plain"}),
}


def _through_overlay(
    root: Path, snap: OverlaySnapshotter, step: Callable[[Path], None], *, userns: bool
) -> None:
    """Run ``step`` on ``root`` with the step's overlay mounted on it, as the sandbox
    mounts it, in a child with a mount namespace of its own."""
    upper, work = snap.overlay_dirs()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            unshare(CLONE_NEWNS)
            mount("none", "/", "", MS_REC | MS_PRIVATE)
            _mount_overlay(str(root), str(upper), str(work), userns=userns)
            step(root)
            status = 0
        except OSError:  # the mount or the step: shown in the test's output
            traceback.print_exc()
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0


def _state(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path's type, mode, owner, mtime, size and xattrs; not the root's own."""
    found: dict[str, tuple[object, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            xattrs = {
                x: os.getxattr(path, x, follow_symlinks=False)
                for x in os.listxattr(path, follow_symlinks=False)
            }
            found[os.path.relpath(path, root)] = (
                st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                0 if stat.S_ISDIR(st.st_mode) else st.st_size, xattrs,
            )  # fmt: skip
    return found


def _diff_id(root: Path, changes: list[Change], dest: Path) -> str:
    return str(write_layer(root, changes, dest, options=LayerOptions(compression="none")).diff_id)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting overlayfs here needs root")
@pytest.mark.parametrize("sandbox", ["chroot", "userns"])
@pytest.mark.parametrize("case", METADATA_STEPS)
def test_a_metadata_step_makes_the_same_layer_and_rootfs(
    case: str, sandbox: str, tmp_path: Path
) -> None:
    step, expected = METADATA_STEPS[case]
    walk_root, overlay_root = tmp_path / "walk", tmp_path / "overlay"
    _image(walk_root)
    _image(overlay_root)
    walk = WalkSnapshotter()
    walk.begin(walk_root)
    step(walk_root)
    walk_changes = walk.finish()
    snap = OverlaySnapshotter(tmp_path / "scratch")
    snap.begin(overlay_root, sandboxed=True)
    _through_overlay(overlay_root, snap, step, userns=sandbox == "userns")
    overlay_changes = snap.finish()
    # Each sees the change (overlayfs may add parents it copied up: a layer has them anyway).
    assert expected <= {c.path for c in walk_changes}
    assert expected <= {c.path for c in overlay_changes}
    assert _state(overlay_root) == _state(walk_root)
    walk_layer = _diff_id(walk_root, walk_changes, tmp_path / "walk.tar")
    assert _diff_id(overlay_root, overlay_changes, tmp_path / "overlay.tar") == walk_layer
