"""What a sandbox is asked to run: one RUN step, fully described."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

# The device nodes a build step may use; nothing else of the host's /dev is shown.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


@dataclass(frozen=True)
class Mount:
    """Something made visible inside the rootfs for one step only.

    ``kind`` is ``bind`` (``source`` on the host) or ``tmpfs``. ``target`` is an
    absolute path inside the container.
    """

    kind: str
    target: str
    source: str = ""
    readonly: bool = False


@dataclass(frozen=True)
class RunSpec:
    """One process to run inside a stage rootfs."""

    rootfs: Path
    argv: tuple[str, ...]
    env: tuple[str, ...] = ()  # KEY=VALUE, exactly what the process sees
    workdir: str = "/"
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    network: str = "default"  # "none" gives the step a network namespace of its own
    mounts: tuple[Mount, ...] = field(default=())
    hostname: str = "buildkitsandbox"  # what Docker's and BuildKit's RUN steps see
    # (upper, work): mount an overlay over the rootfs so the step's writes land in upper.
    overlay: tuple[str, str] | None = None


# Where a step's combined stdout and stderr go, chunk by chunk.
OutputSink = Callable[[bytes], None]


class Sandbox(Protocol):
    """Runs a step inside a rootfs; never in the caller's own root."""

    name: str

    def run(self, spec: RunSpec, output: OutputSink, *, timeout: float | None = None) -> int:
        """Run the step, stream its output, and return its exit status (128+N for signal N)."""
        ...

    def unavailable(self) -> str | None:
        """None if this backend works on this host, else why not."""
        ...
