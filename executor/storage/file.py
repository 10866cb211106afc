"""``file://`` stores: objects as files under a root directory."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import IO

from executor.storage.store import StorageError, StorageNotFoundError, check_key, temp_beside

__all__ = ["FileStore"]

_COPY_BUFFER_BYTES = 1024 * 1024


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
        check_key(key, where=self.describe())
        return self.root.joinpath(*key.split("/"))

    def _write(self, target: Path, source: IO[bytes]) -> None:
        with temp_beside(target) as (stream, temp):
            shutil.copyfileobj(source, stream, _COPY_BUFFER_BYTES)
            stream.close()
            os.replace(temp, target)

    def _error(self, key: str, doing: str, error: OSError) -> StorageError:
        message = f"{self.describe()}/{key}: {doing}: {error.strerror or error}"
        if isinstance(error, FileNotFoundError) and error.filename == str(self._path(key)):
            return StorageNotFoundError(message)
        return StorageError(message)
