"""A whole farm on loopback for tests: real redis-server, moto's S3 server, the CNCF
registry, and real `farm worker` processes."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support.commands import SupportError
from tests.support.ports import LOOPBACK
from tests.support.process import ManagedProcess, ReadinessProbe, http_probe

# A worker that does not answer /metrics by then did not start.
_START_TIMEOUT_SECONDS = 30.0
# SIGTERM is Celery's warm shutdown: the build under way is finished first.
_STOP_TIMEOUT_SECONDS = 30.0


class WorkerStartError(SupportError):
    """A `farm worker` did not come up; the message ends with its log tail."""


class WorkerProcess(ManagedProcess):
    """One `farm worker`, its port the metrics port; a context manager.

    Ready once /metrics answers and Celery has logged that it is ready. stop() gives
    it time to finish a build, then kills it with its builds (kill() does at once).
    """

    name = "farm worker"
    start_error = WorkerStartError
    poll_interval = 0.2
    stop_timeout = _STOP_TIMEOUT_SECONDS

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        worker_name: str,
        *,
        start_timeout: float = _START_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(start_timeout=start_timeout)
        self.env = dict(env)
        self.worker_name = worker_name
        self._log_to = log_path

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/metrics"

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text: str = response.read().decode()
        return text

    # -- ManagedProcess hooks ------------------------------------------------------------

    def _log_file(self) -> Path:
        return self._log_to

    def _prepare(self) -> str:
        self._log_to.parent.mkdir(parents=True, exist_ok=True)
        return sys.executable

    def _argv(self, program: str, port: int) -> list[str]:
        return [
            program, "-m", "farm", "worker", "--metrics-addr", LOOPBACK,
            "--metrics-port", str(port), "--name", self.worker_name,
        ]  # fmt: skip

    def _environment(self) -> Mapping[str, str]:
        return self.env

    @contextmanager
    def _readiness_probe(self) -> Iterator[ReadinessProbe]:
        with http_probe(self.metrics_url, {200}) as metrics_answer:
            yield lambda: metrics_answer() and b"ready" in self.log_path.read_bytes()

    def _exited_message(self, returncode: int) -> str:
        return (
            f"farm worker {self.worker_name} exited at start with status {returncode}; "
            f"log tail:\n{self.log_tail()}"
        )

    def _timeout_message(self) -> str:
        return (
            f"farm worker {self.worker_name} was not ready within {self.start_timeout} s; "
            f"log tail:\n{self.log_tail()}"
        )


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0
