"""Test base images built by third-party tools only: umoci builds, skopeo pushes.

None of the farm's own code is involved, so a bug in the executor cannot hide behind a
base image made by that same executor.
"""

from __future__ import annotations

import os
import platform
import shutil
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.commands import SupportError, require_tool, run_tool
from tests.support.registry import RegistryServer

__all__ = [
    "APP_GID",
    "APP_UID",
    "BUSYBOX_CMD",
    "BUSYBOX_PATH_ENV",
    "PushedImage",
    "build_busybox_layout",
    "oci_architecture",
    "push_layout",
]

BUSYBOX_CMD = ("sh",)
BUSYBOX_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The unprivileged user tests run USER steps as.
APP_UID = 1000
APP_GID = 1000

_PASSWD = f"""\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:{APP_UID}:{APP_GID}:app:/home/app:/bin/sh
"""
_GROUP = f"""\
root:x:0:
nogroup:x:65534:
app:x:{APP_GID}:
"""
# Python's platform.machine() names against OCI's GOARCH-style names (image-spec config.md).
_PT_INTERP = 3  # ELF program header type naming the dynamic loader
_OCI_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class PushedImage:
    """An image pushed to a test registry."""

    registry: RegistryServer
    repository: str
    tag: str
    digest: str  # the manifest digest skopeo reported, "sha256:..."

    @property
    def reference(self) -> str:
        """`127.0.0.1:PORT/REPOSITORY:TAG`."""
        return f"{self.registry.host}/{self.repository}:{self.tag}"


def oci_architecture() -> str:
    """The host's architecture in OCI terms (the busybox binary copied in is the host's)."""
    machine = platform.machine().lower()
    try:
        return _OCI_ARCHITECTURES[machine]
    except KeyError:
        raise ValueError(f"no OCI architecture name known for machine {machine!r}") from None


def build_busybox_layout(layout_dir: Path, tag: str = "latest") -> None:
    """Build a one-layer busybox image as `layout_dir:tag` with umoci.

    The rootfs: /bin/busybox from Debian's busybox-static with a /bin symlink per applet,
    /etc/passwd and /etc/group (root, nobody, app=1000), /tmp (1777), /root and /home/app
    (owned by app). Config: Cmd ["sh"], a standard PATH, linux on the host's architecture.
    `layout_dir` may be missing, empty, or an existing layout that gets another tag.
    Needs root: the rootfs holds files owned by uid 1000.
    """
    busybox = Path(require_tool("busybox")).resolve()
    if _has_interpreter(busybox):
        raise SupportError(
            f"{busybox} is linked dynamically and cannot run in an image without libc: "
            "install the Debian package 'busybox-static'"
        )
    if not (layout_dir / "index.json").exists():
        if layout_dir.is_dir() and not any(layout_dir.iterdir()):
            layout_dir.rmdir()  # umoci init refuses an existing path
        layout_dir.parent.mkdir(parents=True, exist_ok=True)
        run_tool(["umoci", "init", "--layout", layout_dir])
    image = f"{layout_dir}:{tag}"
    run_tool(["umoci", "new", "--image", image])
    with tempfile.TemporaryDirectory(dir=layout_dir.parent, prefix="busybox-bundle-") as tmp:
        bundle = Path(tmp) / "bundle"
        run_tool(["umoci", "unpack", "--image", image, bundle])
        _populate_rootfs(bundle / "rootfs", busybox)
        run_tool(
            [
                "umoci", "repack", "--image", image,
                "--history.created_by", "tests.support.images: busybox-static rootfs",
                bundle,
            ]
        )  # fmt: skip
    run_tool(
        [
            "umoci", "config", "--image", image,
            "--config.cmd", BUSYBOX_CMD[0],
            "--config.env", BUSYBOX_PATH_ENV,
            "--os", "linux",
            "--architecture", oci_architecture(),
            "--no-history",
        ]
    )  # fmt: skip
    # Drop the blobs of the intermediate manifests and configs.
    run_tool(["umoci", "gc", "--layout", layout_dir])


def push_layout(
    layout_dir: Path,
    tag: str,
    registry_host: str,
    repository: str,
    creds: tuple[str, str] | None = None,
) -> str:
    """Copy `layout_dir:tag` to `registry_host/repository:tag` with skopeo; return the digest.

    Without `creds` the push is anonymous: no credentials file of the machine is read.
    """
    with tempfile.TemporaryDirectory(prefix="skopeo-push-") as tmp:
        digest_file = Path(tmp) / "digest"
        auth = ["--dest-creds", f"{creds[0]}:{creds[1]}"] if creds else ["--dest-no-creds"]
        run_tool(
            [
                "skopeo", "copy",
                # Tests must not depend on the host's /etc/containers/policy.json.
                "--insecure-policy",
                "--dest-tls-verify=false",
                *auth,
                "--digestfile", digest_file,
                f"oci:{layout_dir}:{tag}",
                f"docker://{registry_host}/{repository}:{tag}",
            ]
        )  # fmt: skip
        return digest_file.read_text().strip()


def _populate_rootfs(rootfs: Path, busybox: Path) -> None:
    for directory in ("bin", "etc", "root", "home", "dev", "proc", "sys"):
        (rootfs / directory).mkdir(mode=0o755, exist_ok=True)
    (rootfs / "root").chmod(0o700)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    (rootfs / "bin" / "busybox").chmod(0o755)
    # `--list` names applets without directories; all go into /bin (PATH covers it),
    # as in Docker Hub's busybox image.
    for applet in run_tool([busybox, "--list"]).split():
        if applet != "busybox":
            (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(_PASSWD)
    (rootfs / "etc" / "group").write_text(_GROUP)
    tmp = rootfs / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(stat.S_ISVTX | 0o777)  # mkdir's mode is masked by the umask; chmod is not
    home = rootfs / "home" / "app"
    home.mkdir(mode=0o755)
    os.chown(home, APP_UID, APP_GID)


def _has_interpreter(binary: Path) -> bool:
    """Whether an ELF file names a dynamic loader (a PT_INTERP program header).

    Debian's `busybox` package links dynamically and would not run in an image that has
    no libc; only `busybox-static` works here.
    """
    with binary.open("rb") as f:
        ident = f.read(64)
        if ident[:4] != b"\x7fELF" or ident[4] != 2:  # 64-bit ELF only
            return True  # treat anything else as unusable
        order = "<" if ident[5] == 1 else ">"
        (phoff,) = struct.unpack_from(order + "Q", ident, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", ident, 54)
        for index in range(phnum):
            f.seek(phoff + index * phentsize)
            (p_type,) = struct.unpack(order + "I", f.read(4))
            if p_type == _PT_INTERP:
                return True
    return False
