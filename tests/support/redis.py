"""A real `redis-server` (Debian package `redis-server`) as a test service.

Each RedisServer is its own process on 127.0.0.1 and a free port, configured only on
the command line (never Debian's /etc/redis/redis.conf): no persistence, its working
directory and log under the directory it is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.support.commands import SupportError, require_tool
from tests.support.ports import LOOPBACK
from tests.support.process import ManagedProcess, ReadinessProbe

__all__ = ["RedisServer", "RedisStartError"]

# Redis starts in milliseconds; the margin is for a loaded machine.
DEFAULT_START_TIMEOUT_SECONDS = 10.0


class RedisStartError(SupportError):
    """redis-server did not come up; the message ends with its log tail."""


class RedisServer(ManagedProcess):
    """One `redis-server` process on 127.0.0.1; a context manager."""

    name = "redis-server"
    start_error = RedisStartError
    # --logfile: redis-server writes its log itself.
    writes_own_log = True

    def __init__(
        self, workdir: Path, *, start_timeout: float = DEFAULT_START_TIMEOUT_SECONDS
    ) -> None:
        super().__init__(start_timeout=start_timeout)
        self.workdir = workdir

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def client(self) -> redis.Redis:
        """A new client of database 0 (bytes responses, as redis-py gives by default)."""
        return redis.Redis.from_url(self.url)

    # -- ManagedProcess hooks ------------------------------------------------------------

    def _log_file(self) -> Path:
        return self.workdir / "redis.log"

    def _prepare(self) -> str:
        binary = require_tool("redis-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        return binary

    def _argv(self, program: str, port: int) -> list[str]:
        """Everything on the command line: no config file, no persistence."""
        options = {
            "bind": LOOPBACK,
            "port": str(port),
            "save": "",
            "appendonly": "no",
            "dir": str(self.workdir),
            "logfile": str(self.log_path),
            "daemonize": "no",
        }
        argv = [program]
        for name, value in options.items():
            argv += [f"--{name}", value]
        return argv

    @contextmanager
    def _readiness_probe(self) -> Iterator[ReadinessProbe]:
        probe = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=1.0)

        def answers_ping() -> bool:
            try:
                return bool(probe.ping())
            except (redis.ConnectionError, redis.TimeoutError):
                return False

        try:
            yield answers_ping
        finally:
            probe.close()

    def _exited_message(self, returncode: int) -> str:
        return f"redis-server exited at start:\n{self.log_tail()}"

    def _timeout_message(self) -> str:
        return f"redis-server did not answer PING within {self.start_timeout} s:\n{self.log_tail()}"
