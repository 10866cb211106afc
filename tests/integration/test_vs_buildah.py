"""Side by side with buildah: the same Dockerfiles must give the same filesystem and config.

Each case in tests/buildah_cases/ is built by buildah (chroot isolation, its own
storage root) and by `farm build`; both images are unpacked with umoci and compared
path by path (type, mode, owner, content, link target; not times) and by the runtime
config fields.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_build import farm
from tests.support.commands import require_tool
from tests.support.images import PushedImage
from tests.support.runtime import unpack_image
from tests.support.trees import Entry, config_fields, differences, flatten

CASES = Path(__file__).parent.parent / "buildah_cases"
# Labels only buildah writes about itself.
BUILDAH_LABELS = ("io.buildah.version",)
# buildah's chroot isolation leaves the empty mount points of a RUN in the image
# (/etc/hosts, /etc/resolv.conf, /etc/hostname as empty files, /run as a directory);
# BuildKit and we remove what we created. Only these, and only when empty, are set aside.
BUILDAH_MOUNT_POINTS = ("etc/hostname", "etc/hosts", "etc/resolv.conf", "run")
_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _without_buildah_mount_points(
    ours: dict[str, Entry], theirs: dict[str, Entry]
) -> dict[str, Entry]:
    kept = dict(theirs)
    for path in BUILDAH_MOUNT_POINTS:
        entry = theirs.get(path)
        if path not in ours and entry is not None and entry[0] in ("file", "dir"):
            empty_dir = entry[0] == "dir" and not any(p.startswith(path + "/") for p in theirs)
            if entry[4] == _EMPTY or empty_dir:
                del kept[path]
    return kept


def _buildah(root: Path, *args: str) -> str:
    require_tool("buildah")
    cmd = [
        "buildah",
        "--root", str(root / "storage"),
        "--runroot", str(root / "run"),
        "--storage-driver", "vfs",
        *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _layout_config(layout: Path, tag: str) -> dict[str, object]:
    index = json.loads((layout / "index.json").read_text())
    entry = next(
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    )
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / entry["digest"].split(":")[1]).read_text())
    result: dict[str, object] = json.loads(
        (blobs / manifest["config"]["digest"].split(":")[1]).read_text()
    )
    return result


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_same_result_as_buildah(case: str, busybox_image: PushedImage, tmp_path: Path) -> None:
    context = tmp_path / "context"
    shutil.copytree(CASES / case, context, symlinks=True)
    base = busybox_image.reference

    buildah_root = tmp_path / "buildah"
    _buildah(
        buildah_root,
        "build", "--isolation", "chroot", "--tls-verify=false", "--layers", "--format", "docker",
        "--build-arg", f"BASE={base}", "-t", f"localhost/{case}:test", str(context),
    )  # fmt: skip
    theirs = tmp_path / "theirs"
    _buildah(buildah_root, "push", f"localhost/{case}:test", f"oci:{theirs}:test")

    ours = tmp_path / "ours"
    result = farm(
        "build", "--context", str(context), "--build-arg", f"BASE={base}",
        "--no-push", "--oci-layout-path", str(ours),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    ours_tree = flatten(unpack_image(ours, "latest", tmp_path / "ours-bundle"))
    theirs_tree = flatten(unpack_image(theirs, "test", tmp_path / "theirs-bundle"))
    theirs_tree = _without_buildah_mount_points(ours_tree, theirs_tree)
    assert differences(ours_tree, theirs_tree) == []
    # buildah's OCI output drops what the OCI config has no field for (Healthcheck,
    # Shell, OnBuild); its Docker-format config, which `buildah inspect` shows, keeps them.
    inspected = json.loads(
        _buildah(buildah_root, "inspect", "--type", "image", f"localhost/{case}:test")
    )
    assert config_fields(_layout_config(ours, "latest")) == config_fields(
        inspected["Docker"], drop_labels=BUILDAH_LABELS
    )
