"""The main job: build examples/hello with `farm build`, no services, then run it.

Copies the host's static busybox (Debian busybox-static) into a temporary context
beside examples/hello, builds it to an OCI layout and a docker-archive, inspects the
result, and runs it with runc. Run from the checkout:
`.venv/bin/python -m examples.build_demo`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.runtime import run_image

HERE = Path(__file__).parent / "hello"


def farm(*args: str) -> None:
    print(f"$ farm {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "farm", *args], check=True)


def main() -> int:
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tempfile.TemporaryDirectory(prefix="farm-hello-") as tmp:
        work = Path(tmp)
        context = work / "context"
        shutil.copytree(HERE, context)
        shutil.copy2(busybox, context / "busybox")
        layout, archive = work / "hello-oci", work / "hello.tar"
        farm(
            "build", "--context", str(context), "--destination", "example.com/hello:1",
            "--no-push", "--oci-layout-path", str(layout), "--tar-path", str(archive),
        )  # fmt: skip
        farm("image", "inspect", f"oci:{layout}:1")
        print("$ runc run (the image's CMD, as its USER, in its WORKDIR)", flush=True)
        result = run_image(layout, "1", work / "bundle")
        print(result.stdout, end="")
        if result.status != 0:
            print(result.stderr, file=sys.stderr)
            return result.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
