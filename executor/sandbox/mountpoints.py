"""Mount points a step needs in its rootfs, made before it runs and removed after.

A rootfs may lack /proc, /dev, /etc/hosts or a RUN --mount target. The sandbox
creates what is missing, and afterwards removes it again and restores the parent
directories' times, so the snapshot of the step sees none of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from executor.errors import SandboxError


def inside(rootfs: Path, path: Path) -> bool:
    """True if ``path`` resolves (as the kernel would, from the host) inside ``rootfs``."""
    real_root = os.path.realpath(rootfs)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


@dataclass
class MountPoints:
    """Creates missing mount points under a rootfs; ``remove`` undoes exactly that."""

    rootfs: Path
    created: list[Path] = field(default_factory=list)
    times: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def ensure(self, target: str, *, directory: bool) -> Path:
        """Make ``target`` (absolute, inside the container) exist; refuse escapes."""
        relative = target.lstrip("/")
        path = self.rootfs / relative
        if not inside(self.rootfs, path):
            raise SandboxError(f"mount target {target} resolves outside the rootfs")
        if os.path.lexists(path):
            if directory and not path.is_dir():
                raise SandboxError(f"mount target {target} exists and is not a directory")
            return path
        parts = Path(relative).parts
        current = self.rootfs
        for i, part in enumerate(parts):
            current = current / part
            if os.path.lexists(current):
                if not inside(self.rootfs, current):
                    raise SandboxError(f"mount target {target} resolves outside the rootfs")
                continue
            parent = current.parent
            if parent not in self.times:
                st = parent.stat()
                self.times[parent] = (st.st_atime_ns, st.st_mtime_ns)
            if i < len(parts) - 1 or directory:
                current.mkdir(mode=0o755)
            else:
                current.touch(mode=0o644)
            self.created.append(current)
        return path

    def remove(self) -> None:
        """Remove what ``ensure`` created (deepest first), then restore parent times."""
        for path in reversed(self.created):
            try:
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink()
            except OSError:
                pass  # the step put something there: it belongs in the layer
        for parent, (atime, mtime) in sorted(self.times.items(), key=lambda kv: -len(kv[0].parts)):
            if parent.exists():
                os.utime(parent, ns=(atime, mtime), follow_symlinks=False)
        self.created.clear()
        self.times.clear()
