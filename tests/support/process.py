"""A test service that runs as its own process on 127.0.0.1 and a free port.

ManagedProcess holds the lifecycle the services share: pick a port, launch the process
in its own session, poll until it is ready or has exited, retry on a port lost to a
race, and SIGTERM on stop (then SIGKILL to its process group if it lingers). A subclass
says what differs: the argv for a port, its environment, a config written per port,
the readiness probe and the words of its errors.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import IO, ClassVar, Self

from tests.support.commands import SupportError
from tests.support.ports import free_port
from tests.support.web import fetch

__all__ = ["ManagedProcess", "ReadinessProbe", "http_probe"]

# The services stop at once on SIGTERM; one that lingers past this is killed.
_STOP_TIMEOUT_SECONDS = 5.0
# free_port() can race with another process; a few fresh ports make that harmless.
_BIND_ATTEMPTS = 3
_LOG_TAIL_LINES = 30
_DEFAULT_POLL_INTERVAL_SECONDS = 0.02

# Says whether the service answers yet; called once a poll while it starts.
ReadinessProbe = Callable[[], bool]


class ManagedProcess(ABC):
    """One service process on 127.0.0.1; a context manager.

    `start()` raises `start_error` when the process exits or does not become ready
    within `start_timeout` seconds; the message comes from `_exited_message` or
    `_timeout_message` and should end with the log tail.
    """

    # What messages call the process: "redis-server already started".
    name: ClassVar[str]
    start_error: ClassVar[type[SupportError]]
    # A process that writes its own log file gets no stdout; the others log to log_path.
    writes_own_log: ClassVar[bool] = False
    poll_interval: ClassVar[float] = _DEFAULT_POLL_INTERVAL_SECONDS
    # How long stop() lets the process wind down after SIGTERM before killing it.
    stop_timeout: ClassVar[float] = _STOP_TIMEOUT_SECONDS

    def __init__(self, *, start_timeout: float) -> None:
        self.start_timeout = start_timeout
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- what a service says about itself -------------------------------------------------

    @abstractmethod
    def _log_file(self) -> Path | None:
        """Where the process logs; None while there is no place for a log yet."""

    @abstractmethod
    def _prepare(self) -> str:
        """Check what the process needs and make its directories; return the program."""

    @abstractmethod
    def _argv(self, program: str, port: int) -> list[str]:
        """The command line that serves on `port`."""

    def _configure(self, port: int) -> None:
        """Write what the process reads at start for `port`; nothing by default."""
        return None  # a hook: most services take everything on the command line

    def _environment(self) -> Mapping[str, str] | None:
        """The process's environment; None (the default) passes on this one's."""
        return None  # a hook: most services need nothing of their own

    @abstractmethod
    def _readiness_probe(self) -> AbstractContextManager[ReadinessProbe]:
        """A probe that says whether the started process answers, open while polling."""

    @abstractmethod
    def _exited_message(self, returncode: int) -> str:
        """Why start failed when the process exited with `returncode`."""

    @abstractmethod
    def _timeout_message(self) -> str:
        """Why start failed when the process did not become ready in time."""

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Start the process and wait until it is ready; raise `start_error` if it is not."""
        if self._process is not None:
            raise RuntimeError(f"{self.name} already started")
        program = self._prepare()
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            port = free_port()
            self._configure(port)
            self._port = port
            self._process = self._launch(self._argv(program, port))
            try:
                self._wait_until_ready()
            except self.start_error:
                lost_port = "address already in use" in self.log_tail().lower()
                self._terminate()
                if lost_port and attempt < _BIND_ATTEMPTS:
                    continue
                self.stop()
                raise
            return self
        raise AssertionError("unreachable")  # the loop returns or raises

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers) and wait for it; idempotent."""
        self._terminate()

    def kill(self) -> None:
        """SIGKILL the process and what it started in its process group, as a crash
        would; idempotent."""
        process, self._process = self._process, None
        if process is not None:
            _kill_group(process)

    def signal(self, signum: int) -> None:
        """Send `signum` to the process (SIGTERM: let it shut down on its own)."""
        self._started().send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for the process to exit; its exit status."""
        return self._started().wait(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The server process's pid (for its CPU time, say)."""
        return self._started().pid

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (kept after stop, to test a dead endpoint)."""
        if self._port is None:
            raise RuntimeError(f"{self.name} not started")
        return self._port

    @property
    def log_path(self) -> Path:
        """The process's log."""
        path = self._log_file()
        if path is None:
            raise RuntimeError(f"{self.name} not started")
        return path

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the process's log ("" before it has one)."""
        path = self._log_file()
        if path is None:
            return ""
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- internals -----------------------------------------------------------------------

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError(f"{self.name} not started")
        return self._process

    def _launch(self, argv: list[str]) -> subprocess.Popen[bytes]:
        output: AbstractContextManager[IO[bytes] | int] = (
            nullcontext(subprocess.DEVNULL) if self.writes_own_log else self.log_path.open("ab")
        )
        with output as stdout:
            environment = self._environment()
            return subprocess.Popen(
                argv,
                env=dict(environment) if environment is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                # Its own process group, so a Ctrl-C in the terminal goes to pytest,
                # which then stops the process in order.
                start_new_session=True,
            )

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        process = self._process
        assert process is not None
        with self._readiness_probe() as ready:
            while True:
                if process.poll() is not None:
                    raise self.start_error(self._exited_message(process.returncode))
                if ready():
                    return
                if time.monotonic() > deadline:
                    raise self.start_error(self._timeout_message())
                time.sleep(self.poll_interval)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group the process leads (start_new_session) and reap it."""
    # Only while it is unreaped: its pid cannot name another process's group then.
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=_STOP_TIMEOUT_SECONDS)


@contextmanager
def http_probe(url: str, ready_statuses: Collection[int]) -> Iterator[ReadinessProbe]:
    """A probe that GETs `url` and is ready on one of `ready_statuses` (TLS unverified)."""

    def answers() -> bool:
        try:
            return fetch(url, timeout=1).status in ready_statuses
        except OSError:  # refused, reset, timed out (urllib's URLError is an OSError)
            return False

    yield answers
