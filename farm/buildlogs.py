"""Build logs in Redis while a build runs: capped, appended in chunks, read by offset.

Keys (under the records' ``prefix``): ``{p}:log:{id}`` a list of chunks in order, and
``{p}:logbytes:{id}`` their total size (-1 once the cap was hit). The records expire
both with the build's record; the worker keeps the whole log in object storage.
"""

from __future__ import annotations

import redis

from farm import redis_scripts
from farm.redisio import RecordError, redis_errors

# Build logs are for people: 16 MiB or 100k chunks is far more than anyone reads in
# Redis; the full log belongs in the bucket.
DEFAULT_LOG_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_LOG_MAX_CHUNKS = 100_000
LOG_TRUNCATED = b"\n[farm: log truncated]\n"


def stored_log_key(build_id: str) -> str:
    """Where an ended build's whole log is kept in object storage."""
    return f"logs/{build_id}.log"


class BuildLogs:
    """Every build's live log, in one Redis database under ``prefix``."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        max_bytes: int = DEFAULT_LOG_MAX_BYTES,
        max_chunks: int = DEFAULT_LOG_MAX_CHUNKS,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self.max_bytes = max_bytes
        self.max_chunks = max_chunks
        self._append = client.register_script(redis_scripts.APPEND_LOG)

    def keys(self, build_id: str) -> tuple[str, str]:
        """The log's list and its size counter."""
        return f"{self._prefix}:log:{build_id}", f"{self._prefix}:logbytes:{build_id}"

    def append(self, build_id: str, chunk: bytes) -> None:
        """Append ``chunk`` to the build's log; past the caps, one marker and then nothing."""
        if not chunk:
            return
        with redis_errors(f"appending to the log of build {build_id}"):
            self._append(
                keys=list(self.keys(build_id)),
                args=[chunk, self.max_bytes, self.max_chunks, LOG_TRUNCATED],
            )

    def read(self, build_id: str, offset: int = 0) -> tuple[bytes, int]:
        """The log from chunk ``offset`` on, and the offset to ask for next time."""
        if offset < 0:
            raise RecordError(f"reading the log of build {build_id}: negative offset {offset}")
        with redis_errors(f"reading the log of build {build_id}"):
            chunks = self._redis.lrange(self.keys(build_id)[0], offset, -1)
        data = b"".join(chunk if isinstance(chunk, bytes) else chunk.encode() for chunk in chunks)
        return data, offset + len(chunks)
