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
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import unquote, urlsplit

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore import exceptions as botocore_errors
from botocore.config import Config

from executor.errors import ExecutorError

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

# 16 MiB parts: at most ~600 parts for a 10 GiB layer (S3 allows 10,000), and few
# enough requests that a small context or key record goes up in one PUT.
_PART_BYTES = 16 * 1024 * 1024
# Four parts in flight fill a pod's link without holding more than 64 MiB of buffers.
_TRANSFER_CONCURRENCY = 4
# botocore's "standard" retry mode backs off on throttling and 5xx; three attempts keep
# a dead endpoint from stalling a build for long, and the task layer retries after that.
_MAX_ATTEMPTS = 3
_COPY_BUFFER_BYTES = 1024 * 1024

# Codes S3 (and S3-compatible stores) use for "try again later".
_TEMPORARY_CODES = frozenset(
    {"InternalError", "OperationAborted", "RequestLimitExceeded", "RequestTimeout"}
    | {"ServiceUnavailable", "SlowDown", "Throttling", "ThrottlingException", "TooManyRequests"}
)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# What a boto3 call can raise on purpose: API errors, transport errors, the transfer
# manager's wrappers around both, and local file errors from upload_file/download_file.
_S3_FAILURES = (
    botocore_errors.ClientError,
    botocore_errors.BotoCoreError,
    RetriesExceededError,
    S3UploadFailedError,
    OSError,
)


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
    config = Config(
        s3={"addressing_style": "path" if path_style else "auto"},
        retries={"mode": "standard", "max_attempts": _MAX_ATTEMPTS},
    )
    # A session per store: no process-global boto3 state is shared or changed.
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name=region, config=config
    )
    return S3Store(location, prefix, client)


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
                _check_key(prefix, where=url)
            except StorageError as error:
                raise StorageError(f"{wanted}; the prefix is not a relative path") from error
        return "s3", parts.netloc, prefix
    raise StorageError(wanted)


# -- keys ------------------------------------------------------------------------------


def _check_key(key: str, *, where: str) -> None:
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
def _temp_beside(path: Path) -> Iterator[tuple[IO[bytes], Path]]:
    """Yield a temp file next to `path`; it is removed unless the caller renamed it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    temp = Path(name)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream, temp
    finally:
        temp.unlink(missing_ok=True)


# -- file:// ---------------------------------------------------------------------------


class FileStore:
    """Objects as files under a root directory; writes are atomic (temp + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return self.root.as_uri()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        try:
            with path.open("rb") as source:
                self._write(target, source)
        except OSError as error:
            raise self._error(key, f"writing from {path}", error) from error

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        try:
            self._write(target, io.BytesIO(data))
        except OSError as error:
            raise self._error(key, "writing", error) from error

    def get_file(self, key: str, path: Path) -> None:
        source_path = self._path(key)
        try:
            with source_path.open("rb") as source:
                self._write(path, source)
        except OSError as error:
            raise self._error(key, f"reading to {path}", error) from error

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as error:
            raise self._error(key, "reading", error) from error

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as error:
            raise self._error(key, "deleting", error) from error

    def _path(self, key: str) -> Path:
        _check_key(key, where=self.describe())
        return self.root.joinpath(*key.split("/"))

    def _write(self, target: Path, source: IO[bytes]) -> None:
        with _temp_beside(target) as (stream, temp):
            shutil.copyfileobj(source, stream, _COPY_BUFFER_BYTES)
            stream.close()
            os.replace(temp, target)

    def _error(self, key: str, doing: str, error: OSError) -> StorageError:
        message = f"{self.describe()}/{key}: {doing}: {error.strerror or error}"
        if isinstance(error, FileNotFoundError) and error.filename == str(self._path(key)):
            return StorageNotFoundError(message)
        return StorageError(message)


# -- s3:// -----------------------------------------------------------------------------


class S3Store:
    """Objects in an S3 bucket under an optional prefix, through a boto3 S3 client.

    `client` is a boto3 S3 client (boto3 ships no type hints, hence ``Any``).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: Any,
        *,
        transfer_config: TransferConfig | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.transfer_config = transfer_config or TransferConfig(
            multipart_threshold=_PART_BYTES,
            multipart_chunksize=_PART_BYTES,
            max_concurrency=_TRANSFER_CONCURRENCY,
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def exists(self, key: str) -> bool:
        name = self._name(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=name)
        except botocore_errors.ClientError as error:
            # A HEAD response has no body, so a missing bucket also reads as 404 here;
            # the next put or get names it. Without s3:ListBucket S3 answers 403 instead.
            if _client_error_code(error) in _NOT_FOUND_CODES:
                return False
            raise self._error(name, "checking", error) from error
        except botocore_errors.BotoCoreError as error:
            raise self._error(name, "checking", error) from error
        return True

    def put_file(self, key: str, path: Path) -> None:
        name = self._name(key)
        try:
            self.client.upload_file(str(path), self.bucket, name, Config=self.transfer_config)
        except _S3_FAILURES as error:
            raise self._error(name, f"uploading {path}", error) from error

    def put_bytes(self, key: str, data: bytes) -> None:
        name = self._name(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=name, Body=data)
        except (botocore_errors.ClientError, botocore_errors.BotoCoreError) as error:
            raise self._error(name, "writing", error) from error

    def get_file(self, key: str, path: Path) -> None:
        name = self._name(key)
        try:
            with _temp_beside(path) as (stream, temp):
                stream.close()
                self.client.download_file(self.bucket, name, str(temp), Config=self.transfer_config)
                os.replace(temp, path)
        except _S3_FAILURES as error:
            raise self._error(name, f"downloading to {path}", error) from error

    def get_bytes(self, key: str) -> bytes:
        name = self._name(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=name)
            data: bytes = response["Body"].read()
        except (botocore_errors.ClientError, botocore_errors.BotoCoreError) as error:
            raise self._error(name, "reading", error) from error
        return data

    def delete(self, key: str) -> None:
        name = self._name(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=name)
        except botocore_errors.ClientError as error:
            if _client_error_code(error) in _NOT_FOUND_CODES:
                return
            raise self._error(name, "deleting", error) from error
        except botocore_errors.BotoCoreError as error:
            raise self._error(name, "deleting", error) from error

    def _name(self, key: str) -> str:
        _check_key(key, where=self.describe())
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, name: str) -> str:
        return f"s3://{self.bucket}/{name}"

    def _error(self, name: str, doing: str, error: BaseException) -> StorageError:
        return classify_s3_error(f"{self._where(name)}: {doing}", error)


def _client_error_code(error: botocore_errors.ClientError) -> str:
    code: str = error.response.get("Error", {}).get("Code", "")
    return code


def _root_cause(error: BaseException) -> BaseException:
    """Unwrap boto3's transfer wrappers to the botocore error underneath."""
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, botocore_errors.ClientError | botocore_errors.BotoCoreError):
            break
        inner = getattr(error, "last_exception", None) or error.__cause__ or error.__context__
        if not isinstance(inner, BaseException):
            return error
        error = inner
    return error


def classify_s3_error(where: str, error: BaseException) -> StorageError:
    """Turn a boto3/botocore failure into a StorageError that knows if it is temporary."""
    cause = _root_cause(error)
    if isinstance(cause, botocore_errors.ClientError):
        code = _client_error_code(cause)
        status = int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        detail = cause.response.get("Error", {}).get("Message", "") or f"HTTP {status}"
        if code == "403" and status == 403:
            # HEAD responses carry no error body; this is the usual cause.
            detail = "Forbidden (HEAD also answers 403 for a missing key without s3:ListBucket)"
        message = f"{where}: {code or status}: {detail}"
        if code in _NOT_FOUND_CODES:
            return StorageNotFoundError(message)
        temporary = code in _TEMPORARY_CODES or status == 429 or status >= 500
        return StorageError(message, temporary=temporary)
    if isinstance(
        cause,
        botocore_errors.ConnectionError
        | botocore_errors.HTTPClientError
        | botocore_errors.IncompleteReadError,
    ):
        return StorageError(f"{where}: {cause}", temporary=True)
    if isinstance(cause, botocore_errors.NoCredentialsError):
        return StorageError(f"{where}: no AWS credentials found in the standard chain")
    if isinstance(cause, OSError) and not isinstance(cause, botocore_errors.BotoCoreError):
        # A socket error boto3 did not wrap is the network; a file error is ours.
        temporary = cause.filename is None
        return StorageError(f"{where}: {cause.strerror or cause}", temporary=temporary)
    return StorageError(f"{where}: {type(cause).__name__}: {cause}")
