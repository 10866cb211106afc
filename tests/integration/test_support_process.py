"""ManagedProcess, through the services built on it: port races, start errors, cleanup."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import process
from tests.support.ports import LOOPBACK, free_port, port_is_open
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
