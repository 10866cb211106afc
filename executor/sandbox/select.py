"""Choosing a sandbox backend: by name, or ``auto`` for the strongest that works here."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from executor.errors import SandboxError
from executor.sandbox.namespaces import NamespaceSandbox, probe
from executor.sandbox.probes import ProbeCache
from executor.sandbox.proot import ProotSandbox
from executor.sandbox.spec import RunSpec, Sandbox

# Strongest first: real namespaces as root, then rootless namespaces, then ptrace.
BACKENDS = ("chroot", "userns", "proot")


def make_sandbox(name: str) -> Sandbox:
    if name == "chroot":
        return NamespaceSandbox(userns=False)
    if name == "userns":
        return NamespaceSandbox(userns=True)
    if name == "proot":
        return ProotSandbox()
    raise SandboxError(f"unknown sandbox {name!r}: want auto or one of {', '.join(BACKENDS)}")


@dataclass(frozen=True)
class BackendReport:
    name: str
    reason: str | None  # None: it works

    @property
    def works(self) -> bool:
        return self.reason is None


def probe_all() -> list[BackendReport]:
    """Try every backend on this host (what `farm doctor` prints)."""
    return [BackendReport(name, make_sandbox(name).unavailable()) for name in BACKENDS]


def choose_sandbox(name: str = "auto", *, cache: ProbeCache | None = None) -> Sandbox:
    """The named backend if it works, or with ``auto`` the first one that does."""
    probes = cache or ProbeCache(None)
    if name != "auto":
        sandbox = make_sandbox(name)
        reason = probes.passed(f"sandbox:{name}", sandbox.unavailable)
        if reason is not None:
            raise SandboxError(f"sandbox {name} does not work here: {reason}")
        return sandbox
    reasons = []
    for backend in BACKENDS:
        sandbox = make_sandbox(backend)
        reason = probes.passed(f"sandbox:{backend}", sandbox.unavailable)
        if reason is None:
            return sandbox
        reasons.append(f"{backend}: {reason}")
    raise SandboxError("no sandbox works on this host (" + "; ".join(reasons) + ")")


def probe_overlay(sandbox: Sandbox) -> str | None:
    """None if ``sandbox`` can run a step over an overlayfs mount here, else why not."""
    if not isinstance(sandbox, NamespaceSandbox):
        return f"the {sandbox.name} sandbox cannot mount overlayfs"
    with tempfile.TemporaryDirectory(prefix="farm-overlay-probe-") as tmp:
        base = Path(tmp)
        rootfs, upper, work = base / "rootfs", base / "upper", base / "work"
        for directory in (rootfs, upper, work):
            directory.mkdir()
        return probe(sandbox, RunSpec(rootfs, argv=(), overlay=(str(upper), str(work))))
