"""``s3://`` stores: objects in a bucket under a prefix, through boto3.

Errors are classified here: temporary for 5xx, throttling and connection errors,
permanent for 403, a missing bucket or a bad key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore import exceptions as botocore_errors
from botocore.config import Config

from executor.storage.store import StorageError, StorageNotFoundError, check_key, temp_beside

__all__ = ["S3Store", "classify_s3_error", "open_s3_store"]

# 16 MiB parts: at most ~600 parts for a 10 GiB layer (S3 allows 10,000), and few
# enough requests that a small context or key record goes up in one PUT.
_PART_BYTES = 16 * 1024 * 1024
# Four parts in flight fill a pod's link without holding more than 64 MiB of buffers.
_TRANSFER_CONCURRENCY = 4
# botocore's "standard" retry mode backs off on throttling and 5xx; three attempts keep
# a dead endpoint from stalling a build for long, and the task layer retries after that.
_MAX_ATTEMPTS = 3

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


def open_s3_store(
    bucket: str,
    prefix: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    path_style: bool = False,
) -> S3Store:
    """An S3Store with its own boto3 session and client (standard retries)."""
    config = Config(
        s3={"addressing_style": "path" if path_style else "auto"},
        retries={"mode": "standard", "max_attempts": _MAX_ATTEMPTS},
    )
    # A session per store: no process-global boto3 state is shared or changed.
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name=region, config=config
    )
    return S3Store(bucket, prefix, client)


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
            with temp_beside(path) as (stream, temp):
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
        check_key(key, where=self.describe())
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
