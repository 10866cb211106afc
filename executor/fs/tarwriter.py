"""Tar entries in the POSIX pax interchange format, written to a byte sink.

The layer writer needs byte-stable output that every reader takes without a
warning, so the few header shapes it needs are encoded here rather than by
:mod:`tarfile`:

- tarfile marks a pax header that holds any non-UTF-8 value (a binary
  ``security.capability`` xattr, say) with ``hdrcharset=BINARY``, which GNU tar
  1.34 reports as an unknown keyword on every such entry. Go's archive/tar, which
  wrote most layers in the wild, puts the raw bytes in the record and nothing
  else; so does this module.
- The archive ends with exactly two zero blocks (POSIX ustar), with no padding to
  a 10240-byte record, as Go's writer does; the bytes never depend on a buffer size.

Fields that do not fit a ustar header (names over 100 bytes, sizes of 8 GiB and
more, ids of 2**21 and more, mtimes before 1970 or after 2242) go into a pax
extended header (POSIX.1-2008 pax "Extended Header Keywords"), whose records are
sorted by keyword. Owner names are always empty and no atime/ctime is written.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from executor.errors import LayerError
from executor.oci.digest import CHUNK_SIZE

__all__ = [
    "BLOCK_SIZE",
    "ByteSink",
    "Content",
    "EntryType",
    "TarHeader",
    "TarWriter",
    "encode_header",
]

BLOCK_SIZE = 512
_ZERO_BLOCK = bytes(BLOCK_SIZE)
# ustar field widths; numeric fields hold width-1 octal digits and a NUL.
_NAME_WIDTH = 100
_ID_WIDTH = 8
_NUMBER_WIDTH = 12
_XATTR_PREFIX = b"SCHILY.xattr."
# POSIX ustar header layout: name, then mode, uid, gid, size and mtime (written
# together as one field here), chksum, typeflag, linkname, magic+version, uname,
# gname, devmajor+devminor, prefix, then padding to 512 bytes. "s" fields are cut
# or NUL-padded to their width by struct.
_USTAR = struct.Struct("100s48s8sc100s8s32s32s16s155s12x")
_MAGIC = b"ustar\x0000"
# mode, uid and gid in 8 bytes, size and mtime in 12: octal digits and a NUL.
_NUMBERS = b"%07o\x00%07o\x00%07o\x00%011o\x00%011o\x00"
_DEVICES = b"%07o\x00%07o\x00"
# What the fields every header has alike add to the checksum: the magic, and the
# checksum field itself, counted as eight spaces. Empty fields add nothing.
_FIXED_SUM = sum(_MAGIC) + 8 * ord(" ")
# The name of a pax header entry, as Go's archive/tar writes it: readers that do
# not know pax extract it as a plain file beside the real one, never over it.
_PAX_DIR = b"PaxHeaders.0"


class EntryType(Enum):
    """A ustar typeflag (POSIX ustar "typeflag")."""

    REGULAR = b"0"
    HARDLINK = b"1"
    SYMLINK = b"2"
    CHAR_DEVICE = b"3"
    BLOCK_DEVICE = b"4"
    DIRECTORY = b"5"
    FIFO = b"6"


@dataclass(frozen=True)
class TarHeader:
    """One tar entry's metadata; ``name`` is relative with no trailing slash."""

    name: bytes
    type: EntryType
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    # (name, value) pairs, sorted by name; written as SCHILY.xattr.<name> records.
    xattrs: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def archive_name(self) -> bytes:
        """The name as stored: directories end in ``/`` like docker and tar write them."""
        return self.name + b"/" if self.type is EntryType.DIRECTORY else self.name


class ByteSink(Protocol):
    """Where the tar bytes go. ``data`` may be a view of a buffer that is reused once
    ``write`` returns: a sink that keeps bytes for later must copy them."""

    def write(self, data: bytes | memoryview, /) -> object: ...


class Content(Protocol):
    """A file's bytes, read into a buffer (files opened with ``buffering=0``, BytesIO)."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


class TarWriter:
    """Writes tar entries to a sink; call :meth:`close` to end the archive."""

    def __init__(self, sink: ByteSink) -> None:
        self._sink = sink
        self._closed = False
        # File contents are read into this one buffer, so a big file costs no fresh
        # memory per chunk (each fresh MiB is 256 page faults); created on first use.
        self._buffer: memoryview | None = None

    def add(self, header: TarHeader, content: Content | None = None) -> None:
        """Write one entry; ``content`` gives exactly ``header.size`` bytes, read in chunks."""
        if self._closed:
            raise LayerError("adding to a closed tar archive")
        self._sink.write(encode_header(header))
        if header.size == 0:
            return
        if content is None:
            raise LayerError(f"{_display(header.name)}: no content for {header.size} bytes")
        if self._buffer is None:
            self._buffer = memoryview(bytearray(CHUNK_SIZE))
        remaining = header.size
        while remaining:
            count = content.readinto(self._buffer[: min(remaining, CHUNK_SIZE)])
            if not count:
                # The file shrank after it was stat'ed; the header already promised more.
                raise LayerError(
                    f"{_display(header.name)}: changed while being read: got "
                    f"{header.size - remaining} of {header.size} bytes"
                )
            self._sink.write(self._buffer[:count])
            remaining -= count
        tail = header.size % BLOCK_SIZE
        if tail:
            self._sink.write(_ZERO_BLOCK[tail:])

    def close(self) -> None:
        """End the archive with two zero blocks (POSIX ustar end-of-archive)."""
        if not self._closed:
            self._closed = True
            self._sink.write(_ZERO_BLOCK * 2)


def encode_header(header: TarHeader) -> bytes:
    """The header blocks of one entry: a pax header first if any field needs one."""
    pax: dict[bytes, bytes] = {}
    name = header.archive_name
    if len(name) > _NAME_WIDTH:
        pax[b"path"] = name
    if len(header.linkname) > _NAME_WIDTH:
        pax[b"linkpath"] = header.linkname
    if not _fits(header.uid, _ID_WIDTH):
        pax[b"uid"] = b"%d" % header.uid
    if not _fits(header.gid, _ID_WIDTH):
        pax[b"gid"] = b"%d" % header.gid
    if not _fits(header.size, _NUMBER_WIDTH):
        pax[b"size"] = b"%d" % header.size
    if not _fits(header.mtime, _NUMBER_WIDTH):
        pax[b"mtime"] = b"%d" % header.mtime
    for xname, xvalue in header.xattrs:
        pax[_XATTR_PREFIX + xname] = xvalue
    main = _ustar_block(
        name=name,
        typeflag=header.type.value,
        mode=header.mode,
        uid=header.uid,
        gid=header.gid,
        size=header.size,
        mtime=header.mtime,
        linkname=header.linkname,
        devmajor=header.devmajor,
        devminor=header.devminor,
    )
    if not pax:
        return main
    records = b"".join(_pax_record(key, pax[key]) for key in sorted(pax))
    directory, _, base = header.name.rpartition(b"/")
    pax_name = b"/".join(part for part in (directory, _PAX_DIR, base) if part)
    pax_block = _ustar_block(
        name=pax_name,
        typeflag=b"x",
        mode=0o644,
        uid=0,
        gid=0,
        size=len(records),
        mtime=0,
        linkname=b"",
        devmajor=0,
        devminor=0,
    )
    padding = -len(records) % BLOCK_SIZE
    return pax_block + records + bytes(padding) + main


def _ustar_block(
    *,
    name: bytes,
    typeflag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: bytes,
    devmajor: int,
    devminor: int,
) -> bytes:
    """One 512-byte ustar header; fields that do not fit are left to the pax header."""
    for what, value in (("mode", mode), ("devmajor", devmajor), ("devminor", devminor)):
        if not _fits(value, _ID_WIDTH):
            raise LayerError(f"{_display(name)}: {what} {value} does not fit a tar header")
    name = name[:_NAME_WIDTH]
    linkname = linkname[:_NAME_WIDTH]
    numbers = _NUMBERS % (
        mode,
        _fitted(uid, _ID_WIDTH),
        _fitted(gid, _ID_WIDTH),
        _fitted(size, _NUMBER_WIDTH),
        _fitted(mtime, _NUMBER_WIDTH),
    )
    devices = _DEVICES % (devmajor, devminor)
    # The checksum is the sum of the header's bytes; summing only the fields that
    # vary costs a fraction of summing all 512 (most are NUL).
    checksum = _FIXED_SUM + sum(name) + sum(numbers) + typeflag[0] + sum(linkname) + sum(devices)
    return _USTAR.pack(
        name,
        numbers,
        b"%06o\x00 " % checksum,
        typeflag,
        linkname,
        _MAGIC,
        b"",  # uname and gname stay empty so no host user database leaks in
        b"",
        devices,
        b"",  # prefix: unused, long names go to pax
    )


def _fits(value: int, width: int) -> bool:
    return 0 <= value < 1 << (3 * (width - 1))  # width-1 octal digits


def _fitted(value: int, width: int) -> int:
    """The value for a numeric field, or 0 when a pax record carries the real one."""
    return value if _fits(value, width) else 0


def _pax_record(key: bytes, value: bytes) -> bytes:
    """``"<length> <key>=<value>\\n"`` where the length counts its own digits."""
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + len(str(len(body)))
    if len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode("ascii") + body


def _display(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")
