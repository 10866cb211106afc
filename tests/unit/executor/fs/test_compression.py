import gzip
import io
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from executor.errors import LayerError
from executor.fs.compression import Compressor, compressor, decompressed, sniff

DATA = os.urandom(1 << 20) + b"a" * (3 << 20)


def _compress(kind: str, data: bytes, level: int | None = None) -> bytes:
    comp = compressor(kind, level)
    parts = [comp.compress(data[i : i + 65536]) for i in range(0, len(data), 65536)]
    return b"".join(parts) + comp.flush()


@pytest.mark.parametrize("kind", ["gzip", "zstd", "none"])
def test_round_trip_in_small_and_whole_reads(kind: str) -> None:
    packed = _compress(kind, DATA)
    assert sniff(packed) == kind
    assert decompressed(io.BytesIO(packed), kind).read() == DATA
    reader = decompressed(io.BytesIO(packed), kind)
    got = bytearray()
    while chunk := reader.read(10_000):
        got += chunk
    assert got == DATA


def test_gzip_output_is_stable_and_readable_by_the_stdlib() -> None:
    assert _compress("gzip", DATA) == _compress("gzip", DATA)
    assert gzip.decompress(_compress("gzip", DATA, 1)) == DATA


def test_whole_read_of_a_big_stream_does_not_recurse() -> None:
    packed = _compress("gzip", b"z" * (64 << 20))
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100)
    try:
        assert len(decompressed(io.BytesIO(packed), "gzip").read()) == 64 << 20
    finally:
        sys.setrecursionlimit(old)


def test_multi_member_gzip() -> None:
    packed = gzip.compress(b"one") + gzip.compress(b"two")
    assert decompressed(io.BytesIO(packed), "gzip").read() == b"onetwo"


@pytest.mark.parametrize(
    ("packed", "error"),
    [
        (_compress("gzip", DATA)[:5000], "truncated gzip stream"),
        (gzip.compress(b"abc") + b"\0\0\0\0", "corrupt gzip stream"),
        (b"\x1f\x8bnot really gzip", "corrupt gzip stream"),
    ],
)
def test_bad_gzip_is_a_layer_error(packed: bytes, error: str) -> None:
    with pytest.raises(LayerError, match=error):
        decompressed(io.BytesIO(packed), "gzip").read()


def test_bad_zstd_is_a_layer_error() -> None:
    packed = b"\x28\xb5\x2f\xfd" + b"not really zstd"  # the magic, then junk
    with pytest.raises(LayerError, match="corrupt zstd stream"):
        decompressed(io.BytesIO(packed), "zstd").read()


def test_decompressing_gzip_does_not_import_zstandard() -> None:
    """Only zstd layers pay for the zstandard import (a few ms of every build's start)."""
    code = (
        "import gzip, io, sys\n"
        "from executor.fs.compression import decompressed\n"
        "decompressed(io.BytesIO(gzip.compress(b'x')), 'gzip').read()\n"
        "print('zstandard' in sys.modules, 'platform' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(("kind", "level"), [("gzip", 10), ("zstd", 0), ("brotli", None)])
def test_bad_settings_are_refused(kind: str, level: int | None) -> None:
    with pytest.raises(LayerError):
        compressor(kind, level)


def _text(size: int) -> bytes:
    """Deterministic text-like bytes: words from a small vocabulary, as source code has."""
    words = [b"def", b"return", b"self", b"import", b"layer", b"value", b"    ", b"\n", b"(x)"]
    out = bytearray()
    i = 0
    while len(out) < size:
        out += words[(i * 7 + i // 5) % len(words)] + b" "
        i += 1
    return bytes(out[:size])


@pytest.mark.parametrize("level", [0, 1, 6])
def test_gzip_passes_random_bytes_through_without_growing_them(level: int) -> None:
    data = os.urandom(1 << 20)
    packed = _compress_in(compressor("gzip", level), [data])
    assert gzip.decompress(packed) == data
    # Stored blocks cost 5 bytes per 64 KiB; ISA-L's level 0 alone grows random bytes by ~25%.
    assert len(packed) <= len(data) + 1024


def test_gzip_still_compresses_text_that_follows_random_bytes() -> None:
    noise, text = os.urandom(1 << 20), _text(1 << 20)
    packed = _compress_in(compressor("gzip"), [noise, text])
    assert gzip.decompress(packed) == noise + text
    assert len(packed) < len(noise) + len(text) // 4


def test_deflate_after_stored_bytes_does_not_reach_back_over_them() -> None:
    # The third chunk repeats the end of the first: deflate would point back at it
    # across the stored random chunk unless its window was reset before that chunk.
    text = _text(512 << 10)
    chunks = [text, os.urandom(256 << 10), text[-(200 << 10) :]]
    packed = _compress_in(compressor("gzip"), chunks)
    assert zlib.decompress(packed, 31) == b"".join(chunks)
    assert decompressed(io.BytesIO(packed), "gzip").read() == b"".join(chunks)


def test_gzip_of_mixed_chunks_is_stable_and_gzip_tool_reads_it(tmp_path: Path) -> None:
    chunks = [_text(300 << 10), os.urandom(300 << 10), b"\0" * (200 << 10), os.urandom(1000)]
    packed = _compress_in(compressor("gzip"), chunks)
    assert _compress_in(compressor("gzip"), chunks) == packed
    path = tmp_path / "mixed.gz"
    path.write_bytes(packed)
    out = subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout
    assert out == b"".join(chunks)


def _compress_in(comp: Compressor, chunks: list[bytes]) -> bytes:
    return b"".join(comp.compress(c) for c in chunks) + comp.flush()
