"""The walk and overlay snapshotters make the same layers for the same steps.

Every Dockerfile of tests/buildah_cases, plus one written to stress deletions,
opaque directories, hard links, type changes (a symlink to a host path replaced by
a directory) and xattrs, is built reproducibly with
each snapshotter (and the overlay under both namespace sandboxes): the digests of
the images must be equal, so every layer is byte for byte the same.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
