"""Layer compression: streaming compressors and decompressors for gzip, zstd and none.

gzip is written by ISA-L (the ``isal`` package) at its levels 0-3: level 1, the
default, compresses about ten times faster than zlib's default level 6 on this
kind of machine (265 against 20 MB/s per CPU second on CPython's own sources),
for a larger output: 0.276 of the input against zlib's 0.230 on those sources
(20% more bytes), 0.22 against 0.15 on bench/'s generated text. Levels 4-9 ask
for zlib itself, for whoever wants the smaller layers more than the time.

Input that does not compress (already compressed files, random bytes) is not
run through deflate at all: a sample of each large chunk is tried first, and a
chunk whose sample would not shrink goes into the stream as stored blocks (RFC
1951 section 3.2.4), at the cost of a copy instead of a match search. On random
bytes that is the difference between ~1.8 and ~0.1 ms of CPU per MB; any inflater
reads the result, as it is one ordinary gzip member (RFC 1952).

Output depends only on the bytes and how they are split into ``compress`` calls:
the header is fixed (mtime 0), so the same tar written the same way gives the
same bytes on every run with the same library versions; zstd goes through the
``zstandard`` package, which skips incompressible input by itself.
"""

from __future__ import annotations

import struct
import zlib
from typing import IO, Protocol

from isal import isal_zlib

from executor.errors import LayerError

# Decompress in blocks of this size (the same as executor.oci.digest.CHUNK_SIZE; not
# imported from there so this module depends on nothing but the error tree).
CHUNK_SIZE = 1 << 20

# What compressors take: the layer writer passes views of a reused read buffer.
Buffer = bytes | bytearray | memoryview

COMPRESSIONS = ("gzip", "zstd", "none")
# Default levels: gzip 1 is ISA-L's fast level (zlib 6's ratio on text, ~10x the
# speed); zstd 3 is the zstd CLI's.
DEFAULT_LEVEL = {"gzip": 1, "zstd": 3, "none": 0}
# gzip levels up to this one go to ISA-L; above it, to zlib.
ISAL_MAX_LEVEL = 3
_GZIP_MAGIC = b"\x1f\x8b"
# RFC 1952 member header: deflate, no flags, mtime 0 (stable output), no extra
# flags, OS 255 "unknown" (as ISA-L and Python's gzip write it).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# Chunks at least this big are sampled for compressibility; smaller ones (tar
# headers, small files, gathered) always go through deflate.
_SAMPLED_MIN = 128 << 10
# A sample is as long as deflate's window, so repeats it could find are in it.
_SAMPLE_BYTES = 32 << 10
# A chunk is stored when its samples would not shrink below this fraction: a few
# percent saved is not worth a full match search over the chunk.
_STORE_RATIO = 0.97
# A stored block holds at most 65535 bytes (RFC 1951 section 3.2.4).
_STORED_MAX = 0xFFFF
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Compressor(Protocol):
    """Turns chunks of tar bytes into chunks of compressed bytes.

    The result of ``compress`` is used before the next call and may be ``data``
    itself (no compression), so a caller that reuses its buffer must use it first.
    """

    def compress(self, data: Buffer) -> Buffer: ...

    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: Buffer) -> Buffer:
        return data

    def flush(self) -> bytes:
        return b""


class _Gzip:
    """One gzip member: deflate for compressible chunks, stored blocks for the rest."""

    def __init__(self, level: int) -> None:
        # wbits -15: a raw deflate stream; the member's header and trailer are
        # written here, since the CRC covers stored chunks that deflate never sees.
        lib = isal_zlib if level <= ISAL_MAX_LEVEL else zlib
        self._deflate = lib.compressobj(level, zlib.DEFLATED, -15, 9)
        self._header = _GZIP_HEADER
        self._crc = 0
        self._size = 0
        # Bytes went into deflate since its last full flush: before stored blocks,
        # deflate must end on a byte boundary and forget its window, or its later
        # matches would reach back over the stored bytes it never saw.
        self._deflating = False

    def compress(self, data: Buffer) -> bytes:
        self._crc = isal_zlib.crc32(data, self._crc)
        self._size += len(data)
        head, self._header = self._header, b""
        if len(data) < _SAMPLED_MIN or not _incompressible(data):
            self._deflating = True
            packed: bytes = self._deflate.compress(data)
            return head + packed
        parts: list[bytes | memoryview] = [head]
        if self._deflating:
            parts.append(self._deflate.flush(zlib.Z_FULL_FLUSH))
            self._deflating = False
        view = memoryview(data)
        for start in range(0, len(data), _STORED_MAX):
            block = view[start : start + _STORED_MAX]
            # BFINAL 0, BTYPE 00 and padding to the byte, then LEN and NLEN.
            parts.append(struct.pack("<BHH", 0, len(block), len(block) ^ 0xFFFF))
            parts.append(block)
        return b"".join(parts)

    def flush(self) -> bytes:
        head, self._header = self._header, b""
        trailer = struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)
        rest: bytes = self._deflate.flush()
        return head + rest + trailer


def _incompressible(data: Buffer) -> bool:
    """Whether deflate would barely shrink ``data``, judged from its start and middle."""
    view = memoryview(data)
    for start in (0, (len(data) - _SAMPLE_BYTES) // 2):
        sample = view[start : start + _SAMPLE_BYTES]
        if len(isal_zlib.compress(sample, 1, -15)) < len(sample) * _STORE_RATIO:
            return False
    return True


class _Zstd:
    def __init__(self, level: int) -> None:
        import zstandard  # here: only zstd layers pay its import (~4 ms)

        self._obj = zstandard.ZstdCompressor(level=level).compressobj()

    def compress(self, data: Buffer) -> bytes:
        out: bytes = self._obj.compress(data)
        return out

    def flush(self) -> bytes:
        out: bytes = self._obj.flush()
        return out


def compressor(compression: str, level: int | None = None) -> Compressor:
    """A fresh compressor; ``level`` None means the default for the algorithm."""
    if compression not in COMPRESSIONS:
        raise LayerError(f"unknown compression {compression!r}: want one of {COMPRESSIONS}")
    lvl = DEFAULT_LEVEL[compression] if level is None else level
    if compression == "gzip":
        if not 0 <= lvl <= 9:
            raise LayerError(f"gzip compression level {lvl} out of range 0-9")
        return _Gzip(lvl)
    if compression == "zstd":
        if not 1 <= lvl <= 22:
            raise LayerError(f"zstd compression level {lvl} out of range 1-22")
        return _Zstd(lvl)
    return _Identity()


def sniff(head: bytes) -> str:
    """``gzip``, ``zstd`` or ``none`` from the first bytes of a blob."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "none"


class _GzipReader:
    """Reads the decompressed bytes of a gzip stream (several members allowed)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._obj = zlib.decompressobj(31)
        self._buffer = bytearray()
        self._eof = False
        self._in_member = False  # fed bytes of a member whose end has not come yet

    def _fill(self, want: int) -> None:
        """Decompress until ``want`` bytes are buffered or the input ends."""
        while len(self._buffer) < want and not self._eof:
            if self._obj.eof:
                # One member ended; what follows is another member or the end.
                chunk = self._obj.unused_data
                self._obj = zlib.decompressobj(31)
                self._in_member = False
            else:
                chunk = self._obj.unconsumed_tail
            if not chunk:
                chunk = self._stream.read(CHUNK_SIZE)
            if not chunk:
                if self._in_member:
                    raise LayerError("truncated gzip stream")
                self._eof = True
                break
            self._in_member = True
            try:
                self._buffer += self._obj.decompress(chunk, CHUNK_SIZE)
            except zlib.error as exc:
                raise LayerError(f"corrupt gzip stream: {exc}") from exc

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            while not self._eof:
                self._fill(len(self._buffer) + CHUNK_SIZE)
            out = bytes(self._buffer)
            self._buffer.clear()
            return out
        self._fill(size)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stream.close()


class _ZstdReader:
    """Reads the decompressed bytes of a zstd stream (several frames allowed).

    A corrupt stream raises LayerError, as gzip's does, so callers need not know
    the ``zstandard`` package (imported here, on first use: ~4 ms that only zstd
    layers pay).
    """

    def __init__(self, stream: IO[bytes]) -> None:
        import zstandard  # here: see the docstring

        self._stream = stream
        self._errors = zstandard.ZstdError
        self._reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)

    def read(self, size: int = -1) -> bytes:
        try:
            out: bytes = self._reader.read(size)
        except self._errors as exc:
            raise LayerError(f"corrupt zstd stream: {exc}") from exc
        return out

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stream.close()


def decompressed(stream: IO[bytes], compression: str) -> IO[bytes]:
    """A stream of the uncompressed bytes of ``stream``."""
    if compression == "gzip":
        return _GzipReader(stream)  # type: ignore[return-value]
    if compression == "zstd":
        return _ZstdReader(stream)  # type: ignore[return-value]
    if compression == "none":
        return stream
    raise LayerError(f"unknown compression {compression!r}")
