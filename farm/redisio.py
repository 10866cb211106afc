"""What every reader and writer of the farm's Redis shares: its errors and their mapping.

::

    ExecutorError
    └── RecordError               a record that cannot be written or read back
        ├── DuplicateBuildError   create() with an id or batch id already in use
        └── RecordsUnavailableError  Redis could not be reached (temporary)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from executor.errors import ExecutorError


class RecordError(ExecutorError):
    """A build or batch record that cannot be written, or read back as valid."""

    temporary = False


class DuplicateBuildError(RecordError):
    """A build or batch id that is already in use."""


class RecordsUnavailableError(RecordError):
    """Redis could not be reached or timed out."""

    temporary = True


@contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Turn Redis connection trouble into a temporary RecordsUnavailableError."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RecordsUnavailableError(f"{what}: redis: {exc}") from exc


def text(value: bytes | str) -> str:
    """A Redis reply as text (redis-py gives bytes unless told otherwise)."""
    return value.decode("utf-8") if isinstance(value, bytes) else value
