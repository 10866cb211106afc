import gzip
import io
import os
import sys

import pytest

from executor.errors import LayerError
from executor.fs.compression import compressor, decompressed, sniff

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


@pytest.mark.parametrize(("kind", "level"), [("gzip", 10), ("zstd", 0), ("brotli", None)])
def test_bad_settings_are_refused(kind: str, level: int | None) -> None:
    with pytest.raises(LayerError):
        compressor(kind, level)
