"""FileStore round trips and key checks, store URLs, and S3 error classification."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore import exceptions as botocore_errors

from executor.errors import ExecutorError
from executor.storage import (
    FileStore,
    ObjectStore,
    S3Store,
    StorageError,
    StorageNotFoundError,
    classify_s3_error,
    open_store,
    parse_store_url,
)


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store")


def _leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.startswith("."))


# -- FileStore -------------------------------------------------------------------------


def test_file_store_is_an_object_store(store: FileStore) -> None:
    as_protocol: ObjectStore = store
    assert as_protocol.describe() == (store.root).as_uri()
    assert as_protocol.describe().startswith("file:///")


def test_bytes_round_trip_creates_directories(store: FileStore) -> None:
    store.put_bytes("keys/ab/cd.json", b'{"x": 1}')
    assert store.get_bytes("keys/ab/cd.json") == b'{"x": 1}'
    assert (store.root / "keys" / "ab" / "cd.json").read_bytes() == b'{"x": 1}'
    assert store.exists("keys/ab/cd.json")
    assert not store.exists("keys/ab/other.json")
    assert not store.exists("keys/ab")  # a directory is not an object


def test_put_bytes_replaces(store: FileStore) -> None:
    store.put_bytes("k", b"one")
    store.put_bytes("k", b"two")
    assert store.get_bytes("k") == b"two"
    assert _leftovers(store.root) == []


def test_file_round_trip(store: FileStore, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one copy buffer
    source.write_bytes(data)
    store.put_file("blobs/sha256/abc", source)
    target = tmp_path / "out" / "deep" / "target.bin"
    store.get_file("blobs/sha256/abc", target)
    assert target.read_bytes() == data
    assert _leftovers(store.root / "blobs" / "sha256") == []
    assert _leftovers(target.parent) == []


def test_get_file_replaces_an_existing_file(store: FileStore, tmp_path: Path) -> None:
    store.put_bytes("k", b"new")
    target = tmp_path / "target"
    target.write_bytes(b"old contents, longer")
    store.get_file("k", target)
    assert target.read_bytes() == b"new"


def test_delete_and_delete_missing(store: FileStore) -> None:
    store.put_bytes("a/b", b"x")
    store.delete("a/b")
    assert not store.exists("a/b")
    store.delete("a/b")  # missing is fine
    store.delete("never/was")
    with pytest.raises(StorageNotFoundError):
        store.get_bytes("a/b")


@pytest.mark.parametrize("method", ["get_bytes", "get_file"])
def test_missing_key_is_not_found_and_permanent(
    store: FileStore, tmp_path: Path, method: str
) -> None:
    target = tmp_path / "target"
    with pytest.raises(StorageNotFoundError) as caught:
        if method == "get_bytes":
            store.get_bytes("no/such/key")
        else:
            store.get_file("no/such/key", target)
    assert not caught.value.temporary
    assert isinstance(caught.value, StorageError)
    assert isinstance(caught.value, ExecutorError)
    assert f"{store.describe()}/no/such/key: reading" in str(caught.value)
    assert not target.exists()


def test_get_file_leaves_no_partial_file_on_error(
    store: FileStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_bytes("big", b"x" * (2 * 1024 * 1024))
    out = tmp_path / "out"
    out.mkdir()
    target = out / "target"
    written: list[int] = []

    def failing_copy(source: object, dest: object, length: int = 0) -> None:
        written.append(1)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("executor.storage.file.shutil.copyfileobj", failing_copy)
    with pytest.raises(StorageError, match="No space left on device") as caught:
        store.get_file("big", target)
    assert written, "the copy was attempted"
    assert not isinstance(caught.value, StorageNotFoundError)
    assert sorted(out.iterdir()) == []  # neither the target nor a temp file


def test_get_file_keeps_old_target_on_error(
    store: FileStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_bytes("k", b"new")
    target = tmp_path / "target"
    target.write_bytes(b"old")

    def failing_copy(source: object, dest: object, length: int = 0) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("executor.storage.file.shutil.copyfileobj", failing_copy)
    with pytest.raises(StorageError):
        store.get_file("k", target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "target"]


def test_put_file_missing_source_is_permanent(store: FileStore, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="writing from") as caught:
        store.put_file("k", tmp_path / "absent")
    assert not isinstance(caught.value, StorageNotFoundError)
    assert not store.exists("k")


BAD_KEYS = [
    ("", "empty key"),
    ("/etc/passwd", "absolute key"),
    ("../escape", "'..'"),
    ("a/../../escape", "'..'"),
    ("a/./b", "'.'"),
    ("a//b", "empty component"),
    ("a/b/", "empty component"),
    ("a\\b", "backslash"),
    ("a\0b", "NUL"),
]


@pytest.mark.parametrize(("key", "problem"), BAD_KEYS)
@pytest.mark.parametrize("method", ["exists", "put_bytes", "get_bytes", "delete", "get_file"])
def test_bad_keys_are_refused(
    store: FileStore, tmp_path: Path, key: str, problem: str, method: str
) -> None:
    with pytest.raises(StorageError, match=problem) as caught:
        match method:
            case "exists":
                store.exists(key)
            case "put_bytes":
                store.put_bytes(key, b"x")
            case "get_bytes":
                store.get_bytes(key)
            case "delete":
                store.delete(key)
            case "get_file":
                store.get_file(key, tmp_path / "target")
    assert not caught.value.temporary
    assert not (tmp_path / "escape").exists()


# -- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("s3://bucket", ("s3", "bucket", "")),
        ("s3://bucket/", ("s3", "bucket", "")),
        ("s3://bucket/a/b/", ("s3", "bucket", "a/b")),
        ("file:///srv/farm", ("file", "/srv/farm", "")),
        ("file://localhost/srv/farm", ("file", "/srv/farm", "")),
        ("file:///srv/with%20space", ("file", "/srv/with space", "")),
    ],
)
def test_parse_store_url(url: str, parsed: tuple[str, str, str]) -> None:
    assert parse_store_url(url) == parsed


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "s3://",
        "s3:///prefix",
        "s3://user@bucket",
        "s3://bucket:9000",
        "s3://bucket/a/../b",
        "s3://bucket?x=1",
        "file://host/dir",
        "file:relative",
        "/plain/path",
        "",
    ],
)
def test_bad_store_urls(url: str) -> None:
    with pytest.raises(StorageError, match=r"want s3://BUCKET\[/PREFIX\] or file:///DIR"):
        open_store(url)


def test_open_store_file(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri())
    assert isinstance(store, FileStore)
    assert store.root == tmp_path


def test_open_store_s3_makes_no_request() -> None:
    store = open_store(
        "s3://bucket/pre/fix",
        endpoint_url="http://127.0.0.1:1",
        region="eu-west-1",
        path_style=True,
    )
    assert isinstance(store, S3Store)
    assert store.describe() == "s3://bucket/pre/fix"
    assert store.client.meta.config.s3 == {"addressing_style": "path"}
    assert store.client.meta.region_name == "eu-west-1"
    assert store.client.meta.endpoint_url == "http://127.0.0.1:1"


# -- S3 error classification -----------------------------------------------------------


def _client_error(code: str, status: int, message: str = "msg") -> botocore_errors.ClientError:
    return botocore_errors.ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetObject",
    )


@pytest.mark.parametrize(
    ("error", "kind", "temporary"),
    [
        (_client_error("NoSuchKey", 404), StorageNotFoundError, False),
        (_client_error("404", 404, ""), StorageNotFoundError, False),
        (_client_error("NoSuchBucket", 404), StorageError, False),
        (_client_error("AccessDenied", 403), StorageError, False),
        (_client_error("InvalidAccessKeyId", 403), StorageError, False),
        (_client_error("403", 403, ""), StorageError, False),
        (_client_error("SlowDown", 503), StorageError, True),
        (_client_error("InternalError", 500), StorageError, True),
        (_client_error("502", 502, ""), StorageError, True),
        (_client_error("TooManyRequests", 429), StorageError, True),
        (_client_error("ThrottlingException", 400), StorageError, True),
        (_client_error("RequestTimeout", 400), StorageError, True),
        (botocore_errors.EndpointConnectionError(endpoint_url="http://x"), StorageError, True),
        (botocore_errors.ReadTimeoutError(endpoint_url="http://x"), StorageError, True),
        (botocore_errors.ConnectTimeoutError(endpoint_url="http://x"), StorageError, True),
        (botocore_errors.NoCredentialsError(), StorageError, False),
    ],
)
def test_classify(error: Exception, kind: type[StorageError], temporary: bool) -> None:
    result = classify_s3_error("s3://b/k: reading", error)
    assert type(result) is kind
    assert result.temporary is temporary
    assert str(result).startswith("s3://b/k: reading: ")


def test_classify_names_the_code_and_message() -> None:
    error = _client_error("NoSuchBucket", 404, "The specified bucket does not exist")
    result = classify_s3_error("s3://b/p/k: reading", error)
    assert str(result) == "s3://b/p/k: reading: NoSuchBucket: The specified bucket does not exist"


def test_classify_unwraps_upload_failed() -> None:
    # boto3 raises S3UploadFailedError inside `except ClientError`, so it is the context.
    try:
        try:
            raise _client_error("SlowDown", 503)
        except botocore_errors.ClientError as inner:
            raise S3UploadFailedError(f"Failed to upload: {inner}")  # noqa: B904
    except S3UploadFailedError as outer:
        result = classify_s3_error("s3://b/k: uploading", outer)
    assert result.temporary
    assert "SlowDown" in str(result)
