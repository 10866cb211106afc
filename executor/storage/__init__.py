"""Object storage: the ObjectStore seam, with S3 (boto3) and ``file://`` implementations.

Object storage is the source of truth for bytes (contexts, cached layers, cache-key
records, build logs); everything else keeps only small records. Both stores take keys
as relative POSIX paths (``blobs/sha256/ab12..``) and refuse anything else, so a key can
never climb out of a ``file://`` root or out of an S3 prefix.

Exceptions::

    ExecutorError
    └── StorageError               the store refused or could not be reached;
        │                          temporary for 5xx, throttling and connection errors,
        │                          permanent for 403, a missing bucket or a bad key
        └── StorageNotFoundError   no object under that key (permanent)

Messages read as a chain of what was being done, for example
``s3://bucket/prefix/key: reading: NoSuchBucket: The specified bucket does not exist``.

Modules: ``store`` (the ObjectStore seam, its errors, store URLs and the key rules),
``file`` (FileStore) and ``s3`` (S3Store and the S3 error classification).
"""

from __future__ import annotations

from pathlib import Path

from executor.storage import s3
from executor.storage.file import FileStore
from executor.storage.s3 import S3Store, classify_s3_error
from executor.storage.store import (
    ObjectStore,
    StorageError,
    StorageNotFoundError,
    parse_store_url,
)

__all__ = [
    "FileStore",
    "ObjectStore",
    "S3Store",
    "StorageError",
    "StorageNotFoundError",
    "classify_s3_error",
    "open_store",
    "parse_store_url",
]


def open_store(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    path_style: bool = False,
) -> ObjectStore:
    """Open the store `url` names: ``s3://BUCKET[/PREFIX]`` or ``file:///DIR``.

    S3 credentials come from the standard AWS chain (environment, shared files,
    web identity, instance metadata); nothing here reads or logs them.
    """
    scheme, location, prefix = parse_store_url(url)
    if scheme == "file":
        return FileStore(Path(location))
    return s3.open_s3_store(
        location, prefix, endpoint_url=endpoint_url, region=region, path_style=path_style
    )
