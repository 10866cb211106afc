"""The main job for now: make a base image, copy it through every format, inspect it.

Starts a private registry on 127.0.0.1 (a free port), builds a busybox image with
umoci, then uses `farm image copy` and `farm image inspect` the way a user would,
and stops the registry. Run from the checkout: `.venv/bin/python -m examples.copy_demo`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.images import build_busybox_layout
from tests.support.registry import RegistryServer


def farm(*args: str) -> None:
    print(f"$ farm {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "farm", *args], check=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="farm-demo-") as tmp:
        work = Path(tmp)
        build_busybox_layout(work / "base", "latest")
        with RegistryServer(work / "registry") as registry:
            ref = f"{registry.host}/demo/busybox:1"
            farm("image", "copy", f"oci:{work / 'base'}:latest", f"docker://{ref}")
            farm("image", "inspect", ref)
            farm("image", "copy", ref, f"{registry.host}/demo/busybox:copy")
            farm("image", "copy", ref, f"docker-archive:{work / 'busybox.tar'}:{ref}")
            farm("image", "copy", f"docker-archive:{work / 'busybox.tar'}", f"oci:{work / 'out'}:1")
            farm("image", "inspect", "--json", f"oci:{work / 'out'}:1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
