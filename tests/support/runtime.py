"""Running a built image for real: umoci unpacks it into a bundle, Debian's runc runs it."""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.commands import require_tool, run_tool


@dataclass(frozen=True)
class RunResult:
    status: int
    stdout: str
    stderr: str


def unpack_image(layout: Path, tag: str, bundle: Path) -> Path:
    """`umoci unpack` an OCI layout tag into ``bundle``; return the rootfs path."""
    run_tool(["umoci", "unpack", "--image", f"{layout}:{tag}", bundle])
    return bundle / "rootfs"


def run_image(layout: Path, tag: str, bundle: Path, *, timeout: float = 60) -> RunResult:
    """Run the image's ENTRYPOINT/CMD as its USER in its WORKDIR with its ENV, via runc."""
    require_tool("runc")
    unpack_image(layout, tag, bundle)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    config_path.write_text(json.dumps(config))
    name = f"farm-test-{secrets.token_hex(4)}"
    try:
        proc = subprocess.run(
            ["runc", "run", name],
            cwd=bundle,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    finally:
        subprocess.run(["runc", "delete", "--force", name], capture_output=True, check=False)
    return RunResult(proc.returncode, proc.stdout, proc.stderr)
