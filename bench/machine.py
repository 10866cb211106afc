"""What the numbers were measured on: CPU, cores, memory, kernel, tool versions."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Machine", "describe_machine"]


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    memory_gib: float
    kernel: str
    python: str
    tools: tuple[tuple[str, str], ...]  # (tool, version line)
    # 1, 5 and 15 minute load averages when the run began: how busy the machine was.
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1024 * 1024)
    return 0.0


def _version(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        return "not installed"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else f"exit status {proc.returncode}"


def _farm_version(farm: Path) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"farm {version('farm')} ({farm})"
    except PackageNotFoundError:
        return str(farm)


def describe_machine(farm: Path) -> Machine:
    tools = (
        ("farm", _farm_version(farm)),
        ("buildah", _version(["buildah", "--version"])),
        ("skopeo", _version(["skopeo", "--version"])),
        ("docker-registry", _version(["docker-registry", "--version"])),
        ("umoci", _version(["umoci", "--version"])),
    )
    return Machine(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 0,
        memory_gib=_memory_gib(),
        kernel=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        tools=tools,
        load_average=os.getloadavg(),
    )
