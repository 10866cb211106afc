"""What `farm build` pays for at start-up."""

from __future__ import annotations

import subprocess
import sys

# requests and what it brings (http.cookiejar and urllib.request come with it too), and
# zstandard (with platform), which only zstd layers need.
_NOT_IMPORTED = (
    "requests", "urllib3", "charset_normalizer", "idna", "http.cookiejar", "zstandard", "platform",
)  # fmt: skip


def test_farm_build_imports_no_more_than_a_gzip_build_needs() -> None:
    # A fresh interpreter: this process has imported whatever the other tests did.
    names = ", ".join(repr(n) for n in _NOT_IMPORTED)
    probe = (
        "import sys, farm.cli.build, executor.commands.copy, executor.commands.run\n"
        f"unwanted = ({names},)\n"
        "print(sorted(m for m in sys.modules if m in unwanted or m.split('.')[0] in unwanted))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
