"""A real `redis-server` (Debian package `redis-server`) as a test service.

Each RedisServer is its own process on 127.0.0.1 and a free port, configured only on
the command line (never Debian's /etc/redis/redis.conf): no persistence, its working
directory and log under the directory it is given.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.support.commands import SupportError, require_tool
from tests.support.ports import LOOPBACK, free_port

__all__ = ["RedisServer", "RedisStartError"]

# Redis starts in milliseconds; the margin is for a loaded machine.
DEFAULT_START_TIMEOUT_SECONDS = 10.0
_STOP_TIMEOUT_SECONDS = 5.0
# free_port() can race with another process; a few fresh ports make that harmless.
_BIND_ATTEMPTS = 3
_LOG_TAIL_LINES = 30
_POLL_INTERVAL_SECONDS = 0.02


class RedisStartError(SupportError):
    """redis-server did not come up; the message ends with its log tail."""


class RedisServer:
    """One `redis-server` process on 127.0.0.1; a context manager."""

    def __init__(
        self, workdir: Path, *, start_timeout: float = DEFAULT_START_TIMEOUT_SECONDS
    ) -> None:
        self.workdir = workdir
        self.start_timeout = start_timeout
        self.log_path = workdir / "redis.log"
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        """Start the process and wait until it answers PING; raise RedisStartError if not."""
        if self._process is not None:
            raise RuntimeError("redis-server already started")
        binary = require_tool("redis-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            port = free_port()
            self._port = port
            self._process = subprocess.Popen(
                self._argv(binary, port),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # Its own process group: a Ctrl-C goes to pytest, which stops it in order.
                start_new_session=True,
            )
            try:
                self._wait_until_ready()
            except RedisStartError:
                lost_port = "address already in use" in self.log_tail().lower()
                self.stop()
                if lost_port and attempt < _BIND_ATTEMPTS:
                    continue
                raise
            return self
        raise AssertionError("unreachable")  # the loop returns or raises

    def _argv(self, binary: str, port: int) -> list[str]:
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
        argv = [binary]
        for name, value in options.items():
            argv += [f"--{name}", value]
        return argv

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers) and wait for it; idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_SECONDS)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("redis-server not started")
        return self._port

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def client(self) -> redis.Redis:
        """A new client of database 0 (bytes responses, as redis-py gives by default)."""
        return redis.Redis.from_url(self.url)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        probe = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=1.0)
        try:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    raise RedisStartError(f"redis-server exited at start:\n{self.log_tail()}")
                try:
                    if probe.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                time.sleep(_POLL_INTERVAL_SECONDS)
        finally:
            probe.close()
        raise RedisStartError(
            f"redis-server did not answer PING within {self.start_timeout} s:\n{self.log_tail()}"
        )
