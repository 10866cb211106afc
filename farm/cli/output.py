"""Human-readable sizes and progress lines for the terminal."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from executor.oci.manifest import Descriptor

# Blobs smaller than this copy too fast for a progress line to help.
PROGRESS_MIN_BYTES = 8 << 20
# At most one line per blob per this many seconds.
PROGRESS_INTERVAL_SECONDS = 1.0


def format_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Prints ``copying sha256:ab12.. 12.0 MiB / 200.0 MiB (6%)`` for large blobs."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def __call__(self, descriptor: Descriptor, done: int) -> None:
        if descriptor.size < PROGRESS_MIN_BYTES:
            return
        key = str(descriptor.digest)
        now = time.monotonic()
        finished = done >= descriptor.size
        with self._lock:
            if not finished and now - self._last.get(key, 0.0) < PROGRESS_INTERVAL_SECONDS:
                return
            if finished and self._last.get(key) == -1.0:
                return
            self._last[key] = -1.0 if finished else now
            percent = 100 * done // max(descriptor.size, 1)
            print(
                f"copying {descriptor.digest.short} {format_bytes(done)} / "
                f"{format_bytes(descriptor.size)} ({percent}%)",
                file=self._stream,
                flush=True,
            )
