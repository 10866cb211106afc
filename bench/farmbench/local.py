"""A local farm for the benchmarks: what ``farm up`` starts, ready to take builds.

``farm.local.up`` starts redis-server, a CNCF registry, ``file://`` storage and N
``farm worker`` processes under a FARM_HOME of the scratch directory; this waits
until every worker has logged Celery's ``ready``, pushes the busybox base to the
farm's registry, and ``farm.local.down`` stops it all again.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType

from bench import BenchError
from farm import local
from farm.client import FarmClient
from farm.config import CONFIG_VARIABLE, Settings
from tests.support.images import push_layout

__all__ = ["BASE_REPOSITORY", "LocalBenchFarm"]

BASE_REPOSITORY = "library/busybox"
# Celery workers import the farm and connect to Redis in a few seconds; far more on
# a machine this loaded means something is wrong.
_READY_TIMEOUT_SECONDS = 120.0
_POLL_SECONDS = 0.1
_READY_MARK = b" ready."


class LocalBenchFarm:
    """``farm up --workers N`` in ``home``, as a context manager."""

    def __init__(self, home: Path, *, workers: int, layout: Path, tag: str) -> None:
        self.home = home
        self.workers = workers
        self._layout = layout
        self._tag = tag
        self._farm: local.LocalFarm | None = None

    def __enter__(self) -> LocalBenchFarm:
        self.home.mkdir(parents=True, exist_ok=True)
        self._farm = local.up(self.home, workers=self.workers)
        try:
            self._wait_ready()
            push_layout(self._layout, self._tag, self.registry, BASE_REPOSITORY)
        except BaseException:
            local.down(self.home)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._farm is not None:
            local.down(self.home)
            self._farm = None

    @property
    def registry(self) -> str:
        if self._farm is None:
            raise RuntimeError("the farm is not up")
        return self._farm.registry

    @property
    def base(self) -> str:
        return f"{self.registry}/{BASE_REPOSITORY}:{self._tag}"

    def settings(self, **overrides: str) -> Settings:
        """The farm's settings; ``overrides`` are FARM_* variables (``FARM_QUEUE="x"``)."""
        return Settings.from_env(
            {CONFIG_VARIABLE: str(self.home / local.SETTINGS_FILE), **overrides}
        )

    def client(self, **overrides: str) -> FarmClient:
        return FarmClient(self.settings(**overrides))

    def pids(self, *, workers: bool) -> list[int]:
        """The worker processes' ids, or the services' (redis, registry)."""
        if self._farm is None:
            raise RuntimeError("the farm is not up")
        return [
            pid for name, pid in self._farm.pids.items() if name.startswith("worker") == workers
        ]

    def worker_logs(self) -> list[Path]:
        return [self.home / "logs" / f"worker{n}.log" for n in range(self.workers)]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
        pending = self.worker_logs()
        while pending:
            pending = [log for log in pending if not _ready(log)]
            if not pending:
                return
            if time.monotonic() > deadline:
                tail = pending[0].read_text(errors="replace")[-800:] if pending[0].exists() else ""
                raise BenchError(
                    f"farm worker log {pending[0]} shows no `ready` after "
                    f"{_READY_TIMEOUT_SECONDS:.0f} s:\n{tail}"
                )
            time.sleep(_POLL_SECONDS)


def _ready(log: Path) -> bool:
    try:
        return _READY_MARK in log.read_bytes()
    except FileNotFoundError:
        return False
