"""The farm's main job on one machine: `farm up`, a batch of builds, `farm down`.

A base image (busybox from scratch) is built first and pushed to the farm's own
registry; two app images are built FROM it once it is there (depends_on), by two
workers. Run from the checkout: `.venv/bin/python -m examples.farm_demo`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HELLO = Path(__file__).parent / "hello"


def farm(*args: str, env: dict[str, str]) -> str:
    print(f"$ farm {' '.join(args)}", flush=True)
    out = subprocess.run(
        [sys.executable, "-m", "farm", *args],
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    print(out, end="", flush=True)
    return out


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="farm-demo-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "FARM_HOME": str(work / "farm")}
        up = farm("up", "--workers", "2", env=env)
        registry = up.split("registry ")[1].split(",")[0]
        try:
            base = work / "base"
            shutil.copytree(HELLO, base)
            shutil.copy2(shutil.which("busybox") or "/bin/busybox", base / "busybox")
            for name in ("api", "worker"):
                app = work / name
                app.mkdir()
                (app / "Dockerfile").write_text(
                    f"FROM {registry}/demo/base:1\n"
                    "USER 0:0\n"
                    f'RUN echo "{name} built on the farm" > /app/role\n'
                    "USER 1000:1000\n"
                    'CMD ["cat", "/app/role"]\n'
                )
            builds = [
                {"name": "base", "context": "base", "destinations": [f"{registry}/demo/base:1"]},
                *(
                    {
                        "name": name,
                        "context": name,
                        "destinations": [f"{registry}/demo/{name}:1"],
                        "depends_on": ["base"],
                    }
                    for name in ("api", "worker")
                ),
            ]
            batch = work / "builds.yaml"
            batch.write_text(json.dumps({"builds": builds}, indent=2))
            farm("submit", "--batch", str(batch), "--wait", env=env)
            farm("list", env=env)
            farm("image", "inspect", f"{registry}/demo/api:1", env=env)
        finally:
            farm("down", env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
