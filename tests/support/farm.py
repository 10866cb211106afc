"""A whole farm on loopback for tests: real redis-server, moto's S3 server, the CNCF
registry, and real `farm worker` processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.support.ports import free_port

# A worker that does not answer /metrics by then did not start.
_START_TIMEOUT_SECONDS = 30


class WorkerProcess:
    """One `farm worker` with its own metrics port; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, env: Mapping[str, str], log_path: Path, name: str) -> None:
        self.metrics_port = free_port()
        self.log_path = log_path
        self.name = name
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "farm", "worker", "--metrics-addr", "127.0.0.1",
                "--metrics-port", str(self.metrics_port), "--name", name,
            ],
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self._wait_ready()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.metrics_url, timeout=1):
                    pass
                if b"ready" in self.log_path.read_bytes():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker {self.name} did not become ready: {self.log_tail()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text: str = response.read().decode()
        return text

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the worker and everything it started, as a node failure would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._log.close()


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0
