"""Fixtures for the integration tests that share one redis-server per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.redis import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the module's tests, stopped after the last."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as started:
        yield started


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of ``redis_server``'s database 0, emptied for this test."""
    connection = redis_server.client()
    connection.flushdb()
    yield connection
    connection.close()
