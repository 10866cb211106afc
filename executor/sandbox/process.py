"""Running the sandbox's own process: output streaming, timeout, and killing it whole."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence

from executor.errors import SandboxError
from executor.sandbox.spec import OutputSink

# Output is read in blocks this big; a step's log arrives as it is written.
READ_BYTES = 64 * 1024
# Exit status reported for a step killed on timeout (as `timeout(1)` does).
TIMEOUT_STATUS = 124


def run_process(
    argv: Sequence[str],
    output: OutputSink,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> int:
    """Run ``argv`` with stdin from /dev/null, stream stdout+stderr, return its status."""
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # its own process group, so a kill reaches all of it
        )
    except OSError as exc:
        raise SandboxError(f"starting {argv[0]}: {exc.strerror}") from exc
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(READ_BYTES):  # type: ignore[attr-defined]
            output(chunk)
        status = proc.wait()
    finally:
        if timer is not None:
            timer.cancel()
        if proc.poll() is None:
            kill()
            proc.wait()
    if timed_out.is_set():
        return TIMEOUT_STATUS
    return 128 - status if status < 0 else status
