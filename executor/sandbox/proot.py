"""The ``proot`` backend: ptrace-based chroot for hosts with neither root nor user namespaces.

Slower than the namespace backends (every system call is traced) and weaker: it
cannot isolate the network, and ids other than the faked root are only pretended.

Warning: proot shows the step the host's own /proc (proot needs one), so a step can
read the builder's processes, their command lines and /proc/<pid>/environ. Use this
backend only for trusted Dockerfiles; prefer ``chroot`` or ``userns`` elsewhere.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from executor.errors import SandboxError
from executor.sandbox.mountpoints import MountPoints
from executor.sandbox.namespaces import prepare_rootfs
from executor.sandbox.process import run_process
from executor.sandbox.spec import DEVICES, OutputSink, RunSpec


class ProotSandbox:
    name = "proot"

    def __init__(self, binary: str = "proot") -> None:
        self.binary = binary

    def run(self, spec: RunSpec, output: OutputSink, *, timeout: float | None = None) -> int:
        if spec.network == "none":
            raise SandboxError("the proot sandbox cannot isolate the network (RUN --network=none)")
        program = shutil.which(self.binary)
        if program is None:
            raise SandboxError("proot is not installed")
        scratch = Path(tempfile.mkdtemp(prefix="farm-proot-"))
        points = MountPoints(spec.rootfs)
        try:
            binds = prepare_rootfs(spec, points, scratch).etc
            identity = ["-0"] if spec.uid == 0 else ["-i", f"{spec.uid}:{spec.gid}"]
            argv = [
                program,
                "-r",
                str(spec.rootfs),
                "-w",
                spec.workdir or "/",
                *identity,
                "-b",
                "/proc",
            ]
            # Only the device nodes a build needs, not the host's whole /dev.
            for name in DEVICES:
                argv += ["-b", f"/dev/{name}"]
            for target, source in binds.items():
                argv += ["-b", f"{source}:{target}"]
            for m in spec.mounts:
                if m.kind == "tmpfs":
                    tmp = scratch / f"tmpfs-{len(argv)}"
                    tmp.mkdir()
                    argv += ["-b", f"{tmp}:{m.target}"]
                else:
                    argv += ["-b", f"{m.source}:{m.target}"]
            argv += list(spec.argv)
            env = dict(item.partition("=")[::2] for item in spec.env)
            return run_process(argv, output, env=env, timeout=timeout)
        finally:
            points.remove()
            shutil.rmtree(scratch, ignore_errors=True)

    def unavailable(self) -> str | None:
        if shutil.which(self.binary) is None:
            return "proot is not installed (Debian package proot)"
        if not os.path.exists("/proc/self/status"):
            return "no /proc"
        return None
