"""ManagedProcess, through the services built on it: port races, start errors, cleanup,
and stopping a process that will not stop."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import process, procs
from tests.support.commands import SupportError
from tests.support.ports import LOOPBACK, free_port, port_is_open
from tests.support.process import ManagedProcess, ReadinessProbe
from tests.support.redis import RedisServer, RedisStartError
from tests.support.s3 import S3Server


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket holds.

    Bound but not listening: a server cannot bind it, and a readiness probe is refused
    at once instead of waiting on a connection nobody answers.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        yield port


def _hand_out(monkeypatch: pytest.MonkeyPatch, ports: list[int]) -> None:
    """Make the next free_port() calls in ManagedProcess.start return `ports` in order."""
    queue = iter(ports)
    monkeypatch.setattr(process, "free_port", lambda: next(queue))


def test_a_port_lost_to_a_race_is_retried_on_a_fresh_one(
    busy_port: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fresh = free_port()
    _hand_out(monkeypatch, [busy_port, fresh])
    with RedisServer(tmp_path / "redis") as server:
        assert server.port == fresh
        assert server.client().ping()


def test_start_gives_up_after_three_lost_ports(
    busy_port: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hand_out(monkeypatch, [busy_port] * 3)
    server = RedisServer(tmp_path / "redis")
    with pytest.raises(RedisStartError, match=r"(?si)exited at start:.*address already in use"):
        server.start()
    assert not server.running
    assert server.port == busy_port


def test_lifecycle_errors_name_the_service(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    with pytest.raises(RuntimeError, match="^redis-server not started$"):
        _ = server.port
    with server, pytest.raises(RuntimeError, match="^redis-server already started$"):
        server.start()
    assert not server.running


def test_s3_server_removes_the_work_directory_it_made() -> None:
    server = S3Server()
    assert server.log_tail() == ""
    with pytest.raises(RuntimeError, match="^S3 server not started$"):
        _ = server.log_path
    with server:
        workdir = server.log_path.parent
        assert workdir.is_dir()
        assert port_is_open(server.port)
    assert not workdir.exists()
    assert server.log_tail() == ""
    assert not port_is_open(server.port)


def test_s3_server_keeps_a_given_work_directory(tmp_path: Path) -> None:
    with S3Server(tmp_path / "s3") as server:
        assert server.log_path == tmp_path / "s3" / "moto.log"
    assert server.log_path.is_file()


class _StubbornStartError(SupportError):
    pass


# Ignores SIGTERM, starts `sleep` in its process group, says the child's pid in the
# file $CHILD_PID_FILE names, and listens on the port it is given.
_STUBBORN = """
import os, signal, socket, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "300"])
with open(os.environ["CHILD_PID_FILE"], "w") as f:
    f.write(str(child.pid))
server = socket.socket()
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
time.sleep(300)
"""


class _Stubborn(ManagedProcess):
    """A process that will not stop on SIGTERM, with a child in its process group."""

    name = "stubborn"
    start_error = _StubbornStartError
    stop_timeout = 0.5

    def __init__(self, workdir: Path) -> None:
        super().__init__(start_timeout=10)
        self.workdir = workdir
        self.child_pid_file = workdir / "child.pid"

    @property
    def child_pid(self) -> int:
        return int(self.child_pid_file.read_text())

    def _log_file(self) -> Path:
        return self.workdir / "stubborn.log"

    def _prepare(self) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return sys.executable

    def _argv(self, program: str, port: int) -> list[str]:
        return [program, "-c", _STUBBORN, str(port)]

    def _environment(self) -> Mapping[str, str]:
        return {**os.environ, "CHILD_PID_FILE": str(self.child_pid_file)}

    @contextmanager
    def _readiness_probe(self) -> Iterator[ReadinessProbe]:
        yield lambda: port_is_open(self.port) and self.child_pid_file.exists()

    def _exited_message(self, returncode: int) -> str:
        return f"stubborn exited with {returncode}:\n{self.log_tail()}"

    def _timeout_message(self) -> str:
        return f"stubborn did not listen:\n{self.log_tail()}"


def test_stop_kills_what_ignores_sigterm_with_its_process_group(tmp_path: Path) -> None:
    with _Stubborn(tmp_path) as stubborn:
        child, started = stubborn.child_pid, time.monotonic()
        stubborn.stop()
        assert time.monotonic() - started >= _Stubborn.stop_timeout
    assert not stubborn.running
    assert procs.wait_gone([child], within=5, poll=0.02)


def test_kill_takes_the_process_group_down_at_once(tmp_path: Path) -> None:
    with _Stubborn(tmp_path) as stubborn:
        child, started = stubborn.child_pid, time.monotonic()
        stubborn.kill()
        assert time.monotonic() - started < _Stubborn.stop_timeout
        assert not stubborn.running
        assert procs.wait_gone([child], within=5, poll=0.02)
        with pytest.raises(RuntimeError, match="^stubborn not started$"):
            stubborn.wait(1)


def test_a_process_signalled_to_stop_is_waited_for(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        server.signal(signal.SIGTERM)
        assert server.wait(10) == 0
        assert not server.running
