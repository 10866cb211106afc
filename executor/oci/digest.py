"""Content digests (OCI image spec, descriptor.md "Digests"), and hashing streams."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol

from executor.errors import DigestMismatchError, InvalidDigestError

if TYPE_CHECKING:
    from collections.abc import Callable

    ProgressFn = Callable[[int], None]

# Python 3.11 has no collections.abc.Buffer; these are the buffers we pass.
Buffer = bytes | bytearray | memoryview

# Only sha256 and sha512 are registered algorithms in the OCI image spec.
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[a-f0-9]+$")
# Reads and copies go in blocks of this size: big enough that Python overhead is
# small next to hashing, small enough to keep memory flat.
CHUNK_SIZE = 1 << 20


@dataclass(frozen=True, order=True)
class Digest:
    """A content digest such as ``sha256:e3b0c442...``."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        want = _HEX_LENGTH.get(self.algorithm)
        if want is None:
            raise InvalidDigestError(f"unsupported digest algorithm {self.algorithm!r}")
        if len(self.hex) != want or not _HEX.match(self.hex):
            raise InvalidDigestError(
                f"invalid {self.algorithm} digest {self.hex!r}: want {want} lowercase hex digits"
            )

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:hex``; raise InvalidDigestError naming the text."""
        algorithm, sep, hexpart = text.partition(":")
        if not sep:
            raise InvalidDigestError(f"invalid digest {text!r}: want algorithm:hex")
        return cls(algorithm, hexpart)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        """``sha256:`` and the first 12 hex digits, for messages."""
        return f"{self.algorithm}:{self.hex[:12]}"

    def verify(self, data: bytes, what: str = "content") -> None:
        """Raise DigestMismatchError unless ``data`` has this digest."""
        got = Digest.of(data, self.algorithm)
        if got != self:
            raise DigestMismatchError(f"{what}: digest mismatch: want {self}, got {got}")


class Hasher:
    """A running digest with a byte count."""

    def __init__(self, algorithm: str = "sha256") -> None:
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: Buffer) -> None:
        self._hash.update(data)
        self.size += memoryview(data).nbytes

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._hash.hexdigest())


class HashingWriter:
    """Wraps a binary sink; hashes and counts everything written through it."""

    def __init__(self, sink: IO[bytes], algorithm: str = "sha256") -> None:
        self._sink = sink
        self.hasher = Hasher(algorithm)

    def write(self, data: Buffer) -> int:
        self.hasher.update(data)
        self._sink.write(data)
        return memoryview(data).nbytes

    def flush(self) -> None:
        self._sink.flush()

    @property
    def size(self) -> int:
        return self.hasher.size

    def digest(self) -> Digest:
        return self.hasher.digest()


def copy_verified(
    source: BinaryIO,
    sink: IO[bytes],
    expected: Digest,
    *,
    expected_size: int | None = None,
    what: str = "blob",
    on_progress: ProgressFn | None = None,
) -> int:
    """Copy ``source`` to ``sink`` in chunks, then check the digest and size.

    The caller must discard what was written when this raises DigestMismatchError.
    """
    hasher = Hasher(expected.algorithm)
    while chunk := source.read(CHUNK_SIZE):
        hasher.update(chunk)
        sink.write(chunk)
        if on_progress is not None:
            on_progress(hasher.size)
    if expected_size is not None and hasher.size != expected_size:
        raise DigestMismatchError(
            f"{what} {expected.short}: size mismatch: want {expected_size} bytes, got {hasher.size}"
        )
    got = hasher.digest()
    if got != expected:
        raise DigestMismatchError(f"{what}: digest mismatch: want {expected}, got {got}")
    return hasher.size


def digest_file(path: str, algorithm: str = "sha256") -> tuple[Digest, int]:
    """The digest and size of a file, read in chunks."""
    hasher = Hasher(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)
    return hasher.digest(), hasher.size


class Reader(Protocol):
    """Anything with ``read(size)``: files, HTTP bodies, decompressors."""

    def read(self, size: int = -1, /) -> bytes: ...


class VerifyingReader:
    """A read-only stream that hashes what passes and checks digest and size at EOF."""

    def __init__(
        self, stream: Reader, expected: Digest, expected_size: int | None, what: str
    ) -> None:
        self._stream = stream
        self._expected = expected
        self._expected_size = expected_size
        self._what = what
        self._hasher = Hasher(expected.algorithm)
        self._checked = False

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self._hasher.update(data)
            if self._expected_size is not None and self._hasher.size > self._expected_size:
                raise DigestMismatchError(
                    f"{self._what} {self._expected.short}: more than the "
                    f"{self._expected_size} bytes announced"
                )
        if not self._checked and ((not data and size != 0) or size is None or size < 0):
            # EOF, or a read-everything call that has just consumed the rest.
            self._check()
        return data

    def _check(self) -> None:
        self._checked = True
        if self._expected_size is not None and self._hasher.size != self._expected_size:
            raise DigestMismatchError(
                f"{self._what} {self._expected.short}: size mismatch: want "
                f"{self._expected_size} bytes, got {self._hasher.size}"
            )
        got = self._hasher.digest()
        if got != self._expected:
            raise DigestMismatchError(
                f"{self._what}: digest mismatch: want {self._expected}, got {got}"
            )

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()
