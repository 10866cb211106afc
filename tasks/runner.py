"""Runs one build as a child process (``farm build``) that can be killed: timeout, cancel,
log streaming, and the outcome it reports."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# How often the runner looks at the cancel flag while a build runs.
CANCEL_POLL_SECONDS = 0.5
log = logging.getLogger("farm.runner")


@dataclass(frozen=True)
class ChildResult:
    """How the child ended: its exit code, and what it wrote to its outcome file."""

    exit_code: int
    timed_out: bool = False
    cancelled: bool = False
    outcome: Mapping[str, Any] = field(default_factory=dict)


def run_child(
    argv: Sequence[str],
    *,
    outcome_file: Path,
    env: Mapping[str, str],
    timeout: float,
    on_output: Callable[[bytes], None],
    cancelled: Callable[[], bool],
    clock: Callable[[], float] = time.monotonic,
) -> ChildResult:
    """Run ``argv`` (which writes ``outcome_file``) until it ends, times out or is cancelled."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        start_new_session=True,  # its own group: a kill reaches all of it
    )

    def pump() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(64 * 1024):  # type: ignore[attr-defined]
            try:
                on_output(chunk)
            except Exception as exc:  # noqa: BLE001 - the pipe must keep draining whatever fails
                log.warning("recording build output: %s", exc)

    reader = threading.Thread(target=pump, name="build-output", daemon=True)
    reader.start()
    deadline = clock() + timeout
    timed_out = was_cancelled = False
    try:
        while proc.poll() is None:
            if clock() > deadline:
                timed_out = True
            elif _asked(cancelled):
                was_cancelled = True
            if timed_out or was_cancelled:
                _kill_group(proc)
                break
            try:
                proc.wait(CANCEL_POLL_SECONDS)
            except subprocess.TimeoutExpired:
                continue
    finally:
        if proc.poll() is None:
            _kill_group(proc)  # never leave a build running behind an error
    code = proc.wait()
    reader.join(timeout=10)
    outcome: dict[str, Any]
    try:
        outcome = json.loads(outcome_file.read_text())
    except (OSError, ValueError):
        outcome = {}
    return ChildResult(code, timed_out, was_cancelled, outcome)


def _asked(cancelled: Callable[[], bool]) -> bool:
    """The cancel flag; a failure to read it (Redis away) is not a cancel."""
    try:
        return cancelled()
    except Exception as exc:  # noqa: BLE001 - keep the build; ask again next poll
        log.warning("reading the cancel flag: %s", exc)
        return False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
