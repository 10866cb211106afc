"""The ``chroot`` and ``userns`` backends: Linux namespaces around a chroot.

``chroot`` needs real root (in a pod: runAsUser 0, no extra capabilities beyond the
defaults); ``userns`` needs only unprivileged user namespaces, and maps the caller to
root inside (with its /etc/subuid range when it has one). Both give the step its own
mount, PID, UTS and IPC namespaces (and network, for ``--network=none``), a fresh
/proc, a minimal /dev, and generated /etc/hosts and /etc/resolv.conf. The root is
switched with pivot_root (the host's filesystem is then unreachable) and the step's
capability bounding set is Docker's default one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor.errors import SandboxError
from executor.sandbox.entry import EntryPool
from executor.sandbox.mountpoints import MountPoints
from executor.sandbox.spec import DEVICES, OutputSink, RunSpec

_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{host}\n"
# Probes should answer fast; a backend that hangs is as good as absent.
_PROBE_TIMEOUT_SECONDS = 20


def _resolv_conf(network: str) -> str:
    if network == "none":
        return ""
    try:
        return Path("/etc/resolv.conf").read_text()
    except OSError:
        return ""


@dataclass
class Prepared:
    """What ``prepare_rootfs`` made ready."""

    # container path -> host file to bind there (/etc/hosts, /etc/resolv.conf)
    etc: dict[str, Path] = field(default_factory=dict)
    # container path -> its mount point's host path, resolved as under chroot
    points: dict[str, Path] = field(default_factory=dict)


def prepare_rootfs(spec: RunSpec, points: MountPoints, scratch: Path) -> Prepared:
    """Create the step's mount points and its /etc/hosts and /etc/resolv.conf sources."""
    etc_files = {
        "/etc/hosts": _HOSTS.format(host=spec.hostname),
        "/etc/resolv.conf": _resolv_conf(spec.network),
    }
    prepared = Prepared()
    for target, content in etc_files.items():
        # Unique names: steps may share ``scratch`` and run at once.
        fd, name = tempfile.mkstemp(prefix=f"{Path(target).name}-", dir=scratch)
        with os.fdopen(fd, "w") as f:
            f.write(content)
        source = Path(name)
        source.chmod(0o644)
        prepared.points[target] = points.ensure(target, directory=False)
        prepared.etc[target] = source
    for target in ("/proc", "/dev"):
        prepared.points[target] = points.ensure(target, directory=True)
    for m in spec.mounts:
        is_dir = m.kind == "tmpfs" or os.path.isdir(m.source)
        prepared.points[m.target] = points.ensure(m.target, directory=is_dir)
    points.settle()
    return prepared


def step_request(spec: RunSpec, prepared: Prepared) -> dict[str, Any]:
    """What enter.py is sent for one step: the spec, with every mount's resolved host target."""
    mounts: list[dict[str, object]] = [
        {"kind": "bind", "source": str(source), "target": str(prepared.points[t]), "ro": False}
        for t, source in prepared.etc.items()
    ]
    mounts += [
        {
            "kind": m.kind,
            "source": m.source,
            "target": str(prepared.points[m.target]),
            "ro": m.readonly,
        }
        for m in spec.mounts
    ]
    return {
        "argv": list(spec.argv),
        "env": list(spec.env),
        "workdir": spec.workdir,
        "uid": spec.uid,
        "gid": spec.gid,
        "groups": list(spec.groups),
        "network": spec.network,
        "hostname": spec.hostname,
        "root": os.path.realpath(spec.rootfs),
        "proc": str(prepared.points["/proc"]),
        "dev": str(prepared.points["/dev"]),
        "devices": list(DEVICES),
        "mounts": mounts,
        "overlay": list(spec.overlay) if spec.overlay else None,
    }


class NamespaceSandbox:
    """Runs steps in new namespaces through enter.py processes it keeps for its lifetime."""

    def __init__(self, *, userns: bool) -> None:
        self.userns = userns
        self.name = "userns" if userns else "chroot"
        self._entries = EntryPool(userns=userns)
        if self._usable():
            # Its start-up overlaps the build's pull and unpack instead of the first RUN.
            self._entries.start()
        # Where steps' /etc/hosts and /etc/resolv.conf are written: one dir for the
        # sandbox's life, as a dir per step cost an rmdir, which on a busy disk waits.
        self._scratch: Path | None = None
        self._scratch_lock = threading.Lock()

    def run(self, spec: RunSpec, output: OutputSink, *, timeout: float | None = None) -> int:
        points = MountPoints(spec.rootfs)
        prepared = None
        try:
            prepared = prepare_rootfs(spec, points, self._scratch_dir())
            return self._entries.run(step_request(spec, prepared), output, timeout=timeout)
        finally:
            points.remove()
            for source in prepared.etc.values() if prepared else ():
                source.unlink(missing_ok=True)

    def _scratch_dir(self) -> Path:
        with self._scratch_lock:
            if self._scratch is None:
                self._scratch = Path(tempfile.mkdtemp(prefix="farm-sandbox-"))
                weakref.finalize(self, shutil.rmtree, self._scratch, ignore_errors=True)
            return self._scratch

    def _usable(self) -> bool:
        return self.userns or os.geteuid() == 0

    def unavailable(self) -> str | None:
        if not self._usable():
            return "needs root (run as uid 0, or use userns)"
        with tempfile.TemporaryDirectory(prefix="farm-probe-") as tmp:
            return probe(self, RunSpec(Path(tmp), argv=()))


def probe(sandbox: NamespaceSandbox, spec: RunSpec) -> str | None:
    """Run an empty step (argv ``()``: namespaces and mounts only); None if it worked."""
    chunks: list[bytes] = []
    try:
        status = sandbox.run(spec, chunks.append, timeout=_PROBE_TIMEOUT_SECONDS)
    except SandboxError as exc:
        return str(exc)
    if status == 0:
        return None
    text = b"".join(chunks).decode(errors="replace").strip().splitlines()
    return (text[-1] if text else f"exit status {status}").removeprefix("sandbox: ")
