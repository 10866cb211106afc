"""Tests for executor/fs/tarwriter.py: header bytes, pax records, end of archive."""

from __future__ import annotations

import io
import os
import re
import tarfile

import pytest

from executor.errors import LayerError
from executor.fs.tarwriter import BLOCK_SIZE, EntryType, TarHeader, TarWriter, encode_header


def first_member(data: bytes) -> tarfile.TarInfo:
    """The first entry of ``data`` as tarfile reads it (it checks every checksum)."""
    tar = tarfile.TarFile(fileobj=io.BytesIO(data), mode="r", encoding="utf-8")
    # next() would go on past the header into content that is not there.
    member = tar.next()
    assert member is not None
    return member


def pax_records(data: bytes) -> list[bytes]:
    """The raw records of the pax header that opens ``data``."""
    assert data[156:157] == b"x"
    size = int(data[124:135], 8)
    return re.findall(rb"\d+ [^\n]*\n", data[BLOCK_SIZE : BLOCK_SIZE + size])


def archive(*entries: tuple[TarHeader, bytes]) -> bytes:
    out = io.BytesIO()
    writer = TarWriter(out)
    for header, content in entries:
        writer.add(header, io.BytesIO(content))
    writer.close()
    return out.getvalue()


def test_short_header_has_no_pax_and_empty_owner_names() -> None:
    data = encode_header(TarHeader(b"etc/passwd", EntryType.REGULAR, mode=0o644, uid=0, size=5))
    assert len(data) == BLOCK_SIZE
    assert data[265:329] == bytes(64)  # uname and gname
    info = first_member(data)
    assert (info.name, info.size, info.mode, info.uname, info.gname) == (
        "etc/passwd",
        5,
        0o644,
        "",
        "",
    )


def test_directory_names_end_in_a_slash() -> None:
    data = encode_header(TarHeader(b"usr/lib", EntryType.DIRECTORY, mode=0o755))
    assert data[:8] == b"usr/lib/"


@pytest.mark.parametrize(
    ("header", "pax_key", "want"),
    [
        (TarHeader(b"n" * 101, EntryType.REGULAR), "path", "n" * 101),
        (TarHeader(b"l", EntryType.SYMLINK, linkname=b"t" * 300), "linkpath", "t" * 300),
        (TarHeader(b"f", EntryType.REGULAR, size=8 << 30), "size", str(8 << 30)),
        (TarHeader(b"f", EntryType.REGULAR, uid=1 << 21), "uid", str(1 << 21)),
        (TarHeader(b"f", EntryType.REGULAR, gid=4_000_000_000), "gid", "4000000000"),
        (TarHeader(b"f", EntryType.REGULAR, mtime=-86400), "mtime", "-86400"),
    ],
)
def test_fields_that_do_not_fit_ustar_go_to_pax(header: TarHeader, pax_key: str, want: str) -> None:
    data = encode_header(header)
    info = first_member(data)
    assert info.pax_headers == {pax_key: want}
    assert len(pax_records(data)) == 1


def test_name_of_exactly_100_bytes_needs_no_pax() -> None:
    data = encode_header(TarHeader(b"n" * 100, EntryType.REGULAR))
    assert len(data) == BLOCK_SIZE
    assert first_member(data).name == "n" * 100


@pytest.mark.parametrize("value_length", [0, 1, 2, 3, 4, 5, 80, 81, 82, 83, 84, 85, 86, 987, 988])
def test_pax_record_length_counts_its_own_digits(value_length: int) -> None:
    header = TarHeader(b"f", EntryType.REGULAR, xattrs=((b"user.x", b"v" * value_length),))
    [record] = pax_records(encode_header(header))
    declared = int(record.split(b" ", 1)[0])
    assert declared == len(record)


def test_binary_xattr_is_written_raw_in_sorted_records() -> None:
    value = b"\x01\x00\x00\x02\xff\n="
    header = TarHeader(
        b"f", EntryType.REGULAR, xattrs=((b"security.capability", value), (b"user.a", b"1"))
    )
    data = encode_header(header)
    records = pax_records_raw(data)
    assert records == (
        b"44 SCHILY.xattr.security.capability=" + value + b"\n" + b"25 SCHILY.xattr.user.a=1\n"
    )
    info = first_member(data)
    got = info.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape")
    assert got == value


def pax_records_raw(data: bytes) -> bytes:
    size = int(data[124:135], 8)
    return data[BLOCK_SIZE : BLOCK_SIZE + size]


def test_pax_header_name_is_short_and_fixed() -> None:
    data = encode_header(TarHeader(b"d" * 150 + b"/" + b"f" * 150, EntryType.REGULAR))
    name = data[:100].rstrip(b"\x00")
    assert name == (b"d" * 150 + b"/PaxHeaders.0/" + b"f" * 150)[:100]
    assert (
        data[:BLOCK_SIZE]
        == encode_header(TarHeader(b"d" * 150 + b"/" + b"f" * 150, EntryType.REGULAR))[:BLOCK_SIZE]
    )


def test_content_is_padded_and_the_archive_ends_with_two_zero_blocks() -> None:
    data = archive((TarHeader(b"f", EntryType.REGULAR, size=3), b"abc"))
    assert len(data) == 4 * BLOCK_SIZE  # header, content block, two end blocks
    assert data[BLOCK_SIZE : 2 * BLOCK_SIZE] == b"abc" + bytes(BLOCK_SIZE - 3)
    assert data[2 * BLOCK_SIZE :] == bytes(2 * BLOCK_SIZE)


def test_content_of_a_whole_number_of_blocks_gets_no_padding() -> None:
    data = archive((TarHeader(b"f", EntryType.REGULAR, size=BLOCK_SIZE), b"x" * BLOCK_SIZE))
    assert len(data) == 4 * BLOCK_SIZE


def test_only_the_announced_size_is_copied() -> None:
    data = archive((TarHeader(b"f", EntryType.REGULAR, size=2), b"abcdef"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("f")
        assert member is not None
        assert member.read() == b"ab"


class _RecordingContent:
    """File content that remembers the buffers it was asked to fill."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)
        self.buffers: list[object] = []

    def readinto(self, buffer: memoryview, /) -> int:
        self.buffers.append(buffer.obj)
        return self._stream.readinto(buffer)


def test_big_contents_are_read_into_one_reused_buffer() -> None:
    out = io.BytesIO()
    writer = TarWriter(out)
    first, second = _RecordingContent(os.urandom(3 << 20)), _RecordingContent(b"x" * (1 << 20))
    writer.add(TarHeader(b"a", EntryType.REGULAR, size=3 << 20), first)
    writer.add(TarHeader(b"b", EntryType.REGULAR, size=1 << 20), second)
    buffers = first.buffers + second.buffers
    assert len(buffers) >= 4
    assert all(buffer is buffers[0] for buffer in buffers)


def test_content_shorter_than_announced_raises() -> None:
    writer = TarWriter(io.BytesIO())
    with pytest.raises(LayerError, match="f: changed while being read: got 3 of 10 bytes"):
        writer.add(TarHeader(b"f", EntryType.REGULAR, size=10), io.BytesIO(b"abc"))


def test_adding_after_close_raises() -> None:
    writer = TarWriter(io.BytesIO())
    writer.close()
    with pytest.raises(LayerError, match="closed"):
        writer.add(TarHeader(b"f", EntryType.REGULAR))
