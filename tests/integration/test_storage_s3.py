"""S3Store against a real S3 endpoint over HTTP (moto's server mode)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.storage import ObjectStore, S3Store, StorageError, StorageNotFoundError, open_store
from tests.support.s3 import S3_REGION, S3Server

BUCKET = "farm-test"
# Above the 16 MiB multipart threshold, so uploads and downloads go in parts.
BIG_FILE_BYTES = 20 * 1024 * 1024


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A running moto server with bucket BUCKET; the dummy credentials for this test only."""
    for name, value in S3Server.client_env().items():
        monkeypatch.setenv(name, value)
    with S3Server(tmp_path / "s3") as server:
        server.create_bucket(BUCKET)
        yield server


def _open(s3: S3Server, url: str) -> ObjectStore:
    return open_store(url, endpoint_url=s3.endpoint_url, region=S3_REGION, path_style=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def test_big_file_round_trip(s3: S3Server, tmp_path: Path) -> None:
    store = _open(s3, f"s3://{BUCKET}")
    source = tmp_path / "big.bin"
    with source.open("wb") as stream:
        for _ in range(BIG_FILE_BYTES // (1024 * 1024)):
            stream.write(os.urandom(1024 * 1024))
    store.put_file("blobs/sha256/big", source)
    target = tmp_path / "out" / "big.bin"
    store.get_file("blobs/sha256/big", target)
    assert target.stat().st_size == BIG_FILE_BYTES
    assert _sha256(target) == _sha256(source)
    assert sorted(p.name for p in target.parent.iterdir()) == ["big.bin"]  # no temp left


def test_bytes_exists_and_delete(s3: S3Server) -> None:
    store = _open(s3, f"s3://{BUCKET}")
    assert not store.exists("keys/a.json")
    store.put_bytes("keys/a.json", b'{"a": 1}')
    assert store.exists("keys/a.json")
    assert store.get_bytes("keys/a.json") == b'{"a": 1}'
    store.delete("keys/a.json")
    assert not store.exists("keys/a.json")
    store.delete("keys/a.json")  # missing is fine


def test_missing_key_is_not_found_and_permanent(s3: S3Server, tmp_path: Path) -> None:
    store = _open(s3, f"s3://{BUCKET}/pre")
    with pytest.raises(StorageNotFoundError) as caught:
        store.get_bytes("no/such/key")
    assert not caught.value.temporary
    assert str(caught.value).startswith(f"s3://{BUCKET}/pre/no/such/key: reading: NoSuchKey")

    target = tmp_path / "target"
    with pytest.raises(StorageNotFoundError) as caught:
        store.get_file("no/such/key", target)
    assert not caught.value.temporary
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "s3"]  # no temp file left either


def test_wrong_bucket_is_permanent_and_named(s3: S3Server, tmp_path: Path) -> None:
    store = _open(s3, "s3://no-such-bucket/prefix")
    with pytest.raises(StorageError) as caught:
        store.put_bytes("k", b"x")
    assert not caught.value.temporary
    assert not isinstance(caught.value, StorageNotFoundError)
    assert str(caught.value).startswith("s3://no-such-bucket/prefix/k: writing: NoSuchBucket")

    with pytest.raises(StorageError) as caught:
        store.get_bytes("k")
    assert not caught.value.temporary
    assert "no-such-bucket" in str(caught.value)
    assert "NoSuchBucket" in str(caught.value)

    source = tmp_path / "f"
    source.write_bytes(b"data")
    with pytest.raises(StorageError) as caught:
        store.put_file("k", source)
    assert not caught.value.temporary
    assert "s3://no-such-bucket/prefix/k: uploading" in str(caught.value)
    assert "NoSuchBucket" in str(caught.value)


def test_stopped_server_is_temporary(s3: S3Server) -> None:
    store = _open(s3, f"s3://{BUCKET}")
    store.put_bytes("k", b"x")
    s3.stop()
    with pytest.raises(StorageError) as caught:
        store.get_bytes("k")
    assert caught.value.temporary
    assert str(caught.value).startswith(f"s3://{BUCKET}/k: reading: ")
    assert s3.endpoint_url in str(caught.value)
    with pytest.raises(StorageError) as caught:
        store.exists("k")
    assert caught.value.temporary


def test_keys_land_under_the_prefix(s3: S3Server, tmp_path: Path) -> None:
    store = _open(s3, f"s3://{BUCKET}/farm/cache/")
    assert store.describe() == f"s3://{BUCKET}/farm/cache"
    source = tmp_path / "f"
    source.write_bytes(b"file")
    store.put_bytes("keys/abc.json", b"{}")
    store.put_file("blobs/sha256/def", source)
    unprefixed = _open(s3, f"s3://{BUCKET}")
    unprefixed.put_bytes("top", b"t")

    assert s3.list_keys(BUCKET) == [
        "farm/cache/blobs/sha256/def",
        "farm/cache/keys/abc.json",
        "top",
    ]
    assert store.exists("keys/abc.json")
    assert not store.exists("top")
    assert unprefixed.get_bytes("farm/cache/keys/abc.json") == b"{}"
    store.delete("blobs/sha256/def")
    assert s3.list_keys(BUCKET) == ["farm/cache/keys/abc.json", "top"]


def test_store_is_s3(s3: S3Server) -> None:
    store = _open(s3, f"s3://{BUCKET}")
    assert isinstance(store, S3Store)
    assert store.describe() == f"s3://{BUCKET}"
