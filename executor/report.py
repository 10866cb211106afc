"""What a build tells its user as it goes, and how long each phase took."""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

# The last lines of a failing RUN's output, quoted in its error.
TAIL_LINES = 10
PHASES = ("context", "pull", "unpack", "copy", "workdir", "run", "snapshot", "layer", "push")


class StepOutput:
    """Passes a step's output through to the reporter and keeps its last lines."""

    def __init__(self, reporter: BuildReporter) -> None:
        self._reporter = reporter
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._partial = b""

    def __call__(self, chunk: bytes) -> None:
        self._reporter.output(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._tail.append(line.decode(errors="replace"))

    def tail(self) -> list[str]:
        rest = [self._partial.decode(errors="replace")] if self._partial else []
        return [*self._tail, *rest][-TAIL_LINES:]


class BuildReporter:
    """Prints step headers and step output; sums seconds per phase."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self._stream = stream or sys.stderr
        self._quiet = quiet
        self._lock = threading.Lock()
        self.timings: dict[str, float] = defaultdict(float)
        # Bytes moved over the network: "pulled" (layers fetched) and "pushed".
        self.bytes: dict[str, int] = defaultdict(int)

    def step(self, stage: int, stages: int, step: int, steps: int, text: str) -> None:
        self.info(f"[stage {stage}/{stages} step {step}/{steps}] {text}")

    def info(self, text: str) -> None:
        if self._quiet:
            return
        with self._lock:
            print(text, file=self._stream, flush=True)

    def output(self, chunk: bytes) -> None:
        if self._quiet:
            return
        with self._lock:
            self._stream.write(chunk.decode(errors="replace"))
            self._stream.flush()

    def count(self, name: str, size: int) -> None:
        with self._lock:
            self.bytes[name] += size

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            with self._lock:
                self.timings[name] += elapsed
