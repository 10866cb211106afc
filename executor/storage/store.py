"""The ObjectStore seam, its errors, store URLs and the key rules every store applies.

The exception tree is drawn in the ``executor.storage`` docstring.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import unquote, urlsplit

from executor.errors import ExecutorError

__all__ = [
    "ObjectStore",
    "StorageError",
    "StorageNotFoundError",
    "check_key",
    "parse_store_url",
    "temp_beside",
]


class StorageError(ExecutorError):
    """The object store refused a request or could not be reached."""


class StorageNotFoundError(StorageError):
    """No object exists under the key."""

    temporary = False


class ObjectStore(Protocol):
    """Bytes under relative POSIX keys, in a bucket or a directory."""

    def describe(self) -> str:
        """Say where the objects live: ``s3://bucket/prefix`` or ``file:///dir``."""

    def exists(self, key: str) -> bool:
        """Say whether an object is stored under `key`."""

    def put_file(self, key: str, path: Path) -> None:
        """Store the file at `path` under `key`, streaming it."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key`."""

    def get_file(self, key: str, path: Path) -> None:
        """Stream the object to `path`; `path` appears only once it is complete."""

    def get_bytes(self, key: str) -> bytes:
        """Return the object's bytes (for small objects: records, manifests)."""

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""


def parse_store_url(url: str) -> tuple[str, str, str]:
    """Split a store URL into ``(scheme, bucket or directory, prefix)``, checking it.

    ``s3://bucket/a/b`` gives ``("s3", "bucket", "a/b")``; ``file:///srv/x`` gives
    ``("file", "/srv/x", "")``. Anything else raises StorageError.
    """
    parts = urlsplit(url)
    wanted = f"{url!r}: want s3://BUCKET[/PREFIX] or file:///DIR"
    if parts.query or parts.fragment:
        raise StorageError(wanted)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise StorageError(wanted)
        return "file", unquote(parts.path), ""
    if parts.scheme == "s3":
        if not parts.netloc or "@" in parts.netloc or ":" in parts.netloc:
            raise StorageError(wanted)
        prefix = parts.path.strip("/")
        if prefix:
            try:
                check_key(prefix, where=url)
            except StorageError as error:
                raise StorageError(f"{wanted}; the prefix is not a relative path") from error
        return "s3", parts.netloc, prefix
    raise StorageError(wanted)


# -- keys ------------------------------------------------------------------------------


def check_key(key: str, *, where: str) -> None:
    """Refuse keys that are not plain relative POSIX paths."""
    problem = None
    if not key:
        problem = "empty key"
    elif key.startswith("/"):
        problem = "absolute key"
    elif "\\" in key or "\0" in key:
        problem = "key with a backslash or NUL"
    else:
        components = key.split("/")
        if "" in components:
            problem = "key with an empty component"
        elif "." in components or ".." in components:
            problem = "key with a '.' or '..' component"
    if problem is not None:
        raise StorageError(f"{where}: {key!r}: {problem}: want a relative POSIX path")


@contextmanager
def temp_beside(path: Path) -> Iterator[tuple[IO[bytes], Path]]:
    """Yield a temp file next to `path`; it is removed unless the caller renamed it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    temp = Path(name)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream, temp
    finally:
        temp.unlink(missing_ok=True)
