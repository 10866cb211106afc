"""Tests for executor/fs/extract.py: layers made with tarfile, unpacked onto a rootfs."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from executor.errors import LayerError
from executor.fs.extract import ExtractOptions, ExtractResult, extract_layer

# Arbitrary fixed times (2009-02-13 and 2001-09-09), far from "now".
OLD_MTIME = 1_234_567_890
OTHER_MTIME = 1_000_000_000
IS_ROOT = os.geteuid() == 0


@dataclass(frozen=True)
class Entry:
    """One tar member to put in a test layer."""

    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    link: str = ""
    uid: int = 0
    gid: int = 0
    mtime: int = OLD_MTIME
    pax: tuple[tuple[str, str], ...] = ()


def file(name: str, data: bytes = b"", **kw: Any) -> Entry:
    return Entry(name, tarfile.REGTYPE, data, **kw)


def folder(name: str, **kw: Any) -> Entry:
    return Entry(name, tarfile.DIRTYPE, mode=kw.pop("mode", 0o755), **kw)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, tarfile.SYMTYPE, mode=0o777, link=target)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, tarfile.LNKTYPE, link=target)


def tar_bytes(*entries: Entry) -> bytes:
    """An uncompressed PAX tar of ``entries``, in the order given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.kind
            info.mode = e.mode
            info.uid, info.gid = e.uid, e.gid
            info.mtime = e.mtime
            info.linkname = e.link
            info.size = len(e.data) if e.kind == tarfile.REGTYPE else 0
            info.pax_headers = dict(e.pax)
            tar.addfile(info, io.BytesIO(e.data) if e.kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def apply(rootfs: Path, *entries: Entry, **options: object) -> ExtractResult:
    """Unpack a gzip layer of ``entries`` onto ``rootfs``."""
    blob = gzip.compress(tar_bytes(*entries))
    return extract_layer(
        io.BytesIO(blob),
        "gzip",
        rootfs,
        options=ExtractOptions(**options),  # type: ignore[arg-type]
    )


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs"
    path.mkdir()
    return path


def test_files_dirs_symlinks_hardlinks_modes_mtimes(rootfs: Path) -> None:
    result = apply(
        rootfs,
        folder("usr", mode=0o755, mtime=OTHER_MTIME),
        folder("usr/bin", mode=0o750),
        file("usr/bin/tool", b"#!/bin/sh\n", mode=0o4755),
        folder("tmp", mode=0o1777),
        file("etc/motd", b"hello", mode=0o600),
        symlink("bin", "usr/bin"),
        hardlink("usr/bin/tool2", "usr/bin/tool"),
    )
    tool = rootfs / "usr/bin/tool"
    assert tool.read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE(tool.lstat().st_mode) == 0o4755
    assert stat.S_IMODE((rootfs / "tmp").lstat().st_mode) == 0o1777
    assert stat.S_IMODE((rootfs / "usr/bin").lstat().st_mode) == 0o750
    assert stat.S_IMODE((rootfs / "etc/motd").lstat().st_mode) == 0o600
    # A parent the layer did not list is made 0755.
    assert stat.S_IMODE((rootfs / "etc").lstat().st_mode) == 0o755
    assert os.readlink(rootfs / "bin") == "usr/bin"
    assert (rootfs / "usr/bin/tool2").lstat().st_ino == tool.lstat().st_ino
    assert tool.lstat().st_mtime == OLD_MTIME
    # Directory mtimes survive children being added after them.
    assert (rootfs / "usr").lstat().st_mtime == OTHER_MTIME
    assert (rootfs / "usr/bin").lstat().st_mtime == OLD_MTIME
    assert (rootfs / "bin").lstat().st_mtime == OLD_MTIME
    assert result.files == 7
    assert result.bytes == len(b"#!/bin/sh\n") + len(b"hello")
    assert result.whiteouts == 0


def test_large_file_streams_in_chunks(rootfs: Path) -> None:
    data = os.urandom(3 << 20)
    result = apply(rootfs, file("big", data))
    assert (rootfs / "big").read_bytes() == data
    assert result.bytes == len(data)


@pytest.mark.skipif(not IS_ROOT, reason="chown to another user needs root")
def test_owners_preserved_as_root(rootfs: Path) -> None:
    apply(
        rootfs,
        folder("home", uid=1000, gid=1000),
        file("home/f", b"x", uid=1000, gid=1000, mode=0o2755),
        symlink("home/l", "f"),
    )
    st = (rootfs / "home/f").lstat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    # chmod after chown, which would clear setgid.
    assert stat.S_IMODE(st.st_mode) == 0o2755
    assert (rootfs / "home").lstat().st_uid == 1000


def test_owners_not_preserved_when_asked(rootfs: Path) -> None:
    apply(rootfs, file("f", b"x", uid=1000, gid=1000), preserve_owners=False)
    st = (rootfs / "f").lstat()
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


def test_owners_skipped_when_not_root(rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    apply(rootfs, file("f", b"x", uid=1234, gid=1234, mode=0o4755))
    st = (rootfs / "f").lstat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert stat.S_IMODE(st.st_mode) == 0o4755


def test_fifo(rootfs: Path) -> None:
    apply(rootfs, Entry("run/pipe", tarfile.FIFOTYPE, mode=0o620))
    st = (rootfs / "run/pipe").lstat()
    assert stat.S_ISFIFO(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o620


def test_char_device_made_or_skipped_with_warning(rootfs: Path) -> None:
    info = Entry("dev/null", tarfile.CHRTYPE, mode=0o666)
    # tarfile writes devmajor/devminor 0 for Entry; use a real TarInfo for 1:3.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ti = tarfile.TarInfo(info.name)
        ti.type, ti.mode, ti.devmajor, ti.devminor = info.kind, info.mode, 1, 3
        tar.addfile(ti)
    result = extract_layer(io.BytesIO(buf.getvalue()), "none", rootfs)
    path = rootfs / "dev/null"
    if path.exists():
        st = path.lstat()
        assert stat.S_ISCHR(st.st_mode)
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
        assert result.warnings == ()
    else:
        assert any("dev/null" in w for w in result.warnings)
        assert result.files == 0  # dev/ was not an entry of the layer


def test_device_not_permitted_is_skipped_with_warning(
    rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "mknod", refuse)
    result = apply(
        rootfs, Entry("dev/sda", tarfile.BLKTYPE, mode=0o660), file("dev/after", b"still written")
    )
    assert not (rootfs / "dev/sda").exists()
    assert (rootfs / "dev/after").read_bytes() == b"still written"
    assert len(result.warnings) == 1
    assert "dev/sda" in result.warnings[0]
    assert result.files == 1


def _user_xattrs_supported(directory: Path) -> bool:
    probe = directory / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return False
        raise
    finally:
        probe.unlink()
    return True


def test_user_xattr_round_trip(rootfs: Path, tmp_path: Path) -> None:
    if not _user_xattrs_supported(tmp_path):
        pytest.skip("the tmp filesystem refuses user.* xattrs")
    apply(
        rootfs,
        file("f", b"x", pax=(("SCHILY.xattr.user.x", "value"),)),
        file("g", b"y", pax=(("SCHILY.xattr.trusted.overlay.opaque", "y"),)),
    )
    assert os.getxattr(rootfs / "f", "user.x") == b"value"
    # Only security.capability and user.* are applied.
    assert "trusted.overlay.opaque" not in os.listxattr(rootfs / "g")


def test_whiteout_removes_file_and_dir_tree_from_lower_layer(rootfs: Path) -> None:
    apply(rootfs, file("etc/a", b"1"), file("etc/keep", b"2"), file("opt/app/deep/x", b"3"))
    result = apply(rootfs, file("etc/.wh.a"), file(".wh.opt"))
    assert not (rootfs / "etc/a").exists()
    assert (rootfs / "etc/keep").read_bytes() == b"2"
    assert not (rootfs / "opt").exists()
    assert not (rootfs / "etc/.wh.a").exists()
    assert not (rootfs / ".wh.opt").exists()
    assert result.whiteouts == 2


def test_whiteout_under_missing_or_file_parent_is_a_no_op(rootfs: Path) -> None:
    apply(rootfs, file("a", b"file"))
    result = apply(rootfs, file("a/.wh.x"), file("nowhere/.wh.y"))
    assert (rootfs / "a").read_bytes() == b"file"
    assert not (rootfs / "nowhere").exists()
    assert result.whiteouts == 2


def test_entry_under_a_file_parent_is_layer_error_naming_it(rootfs: Path) -> None:
    apply(rootfs, file("a", b"file"))
    with pytest.raises(LayerError, match="a/b"):
        apply(rootfs, file("a/b", b"x"))


def test_whiteout_does_not_hide_same_layer_entry(rootfs: Path) -> None:
    apply(rootfs, file("a", b"lower"))
    apply(rootfs, file("a", b"upper"), file(".wh.a"))
    assert (rootfs / "a").read_bytes() == b"upper"


@pytest.mark.parametrize("marker_last", [False, True], ids=["marker-first", "marker-last"])
def test_opaque_dir_keeps_same_layer_entries_drops_lower(rootfs: Path, marker_last: bool) -> None:
    apply(
        rootfs,
        file("d/old", b"lower"),
        file("d/sub/oldsub", b"lower"),
        file("d/same", b"lower"),
        file("other/stay", b"lower"),
    )
    marker = file("d/.wh..wh..opq")
    upper = [folder("d"), file("d/new", b"upper"), file("d/sub/newsub", b"upper"),
             file("d/same", b"upper")]  # fmt: skip
    entries = [*upper, marker] if marker_last else [upper[0], marker, *upper[1:]]
    apply(rootfs, *entries)
    assert sorted(p.name for p in (rootfs / "d").iterdir()) == ["new", "same", "sub"]
    assert (rootfs / "d/same").read_bytes() == b"upper"
    assert sorted(p.name for p in (rootfs / "d/sub").iterdir()) == ["newsub"]
    assert (rootfs / "other/stay").exists()
    assert not (rootfs / "d/.wh..wh..opq").exists()


def test_opaque_marker_alone_empties_dir(rootfs: Path) -> None:
    apply(rootfs, file("d/old", b"1"), file("d/sub/x", b"2"))
    apply(rootfs, file("d/.wh..wh..opq"))
    assert list((rootfs / "d").iterdir()) == []


@pytest.mark.parametrize(
    ("lower", "upper", "check"),
    [
        pytest.param(
            [file("a", b"file")],
            [folder("a"), file("a/child", b"c")],
            lambda r: (r / "a").is_dir() and (r / "a/child").read_bytes() == b"c",
            id="dir-replaces-file",
        ),
        pytest.param(
            [file("a/deep/x", b"1")],
            [file("a", b"now a file")],
            lambda r: (r / "a").read_bytes() == b"now a file",
            id="file-replaces-dir-tree",
        ),
        pytest.param(
            [file("a/x", b"1")],
            [symlink("a", "elsewhere")],
            lambda r: os.readlink(r / "a") == "elsewhere",
            id="symlink-replaces-dir",
        ),
        pytest.param(
            [symlink("a", "elsewhere")],
            [folder("a"), file("a/y", b"2")],
            lambda r: not (r / "a").is_symlink() and (r / "a/y").read_bytes() == b"2",
            id="dir-replaces-symlink",
        ),
        pytest.param(
            [file("a/x", b"1")],
            [folder("a", mode=0o700)],
            lambda r: (
                (r / "a/x").read_bytes() == b"1"
                and stat.S_IMODE((r / "a").lstat().st_mode) == 0o700
            ),
            id="dir-over-dir-keeps-contents-updates-mode",
        ),
        pytest.param(
            [file("a", b"old"), file("b", b"target")],
            [hardlink("a", "b")],
            lambda r: (r / "a").lstat().st_ino == (r / "b").lstat().st_ino,
            id="hardlink-replaces-file",
        ),
    ],
)
def test_type_replacement(
    rootfs: Path, lower: list[Entry], upper: list[Entry], check: Callable[[Path], bool]
) -> None:
    apply(rootfs, *lower)
    apply(rootfs, *upper)
    assert check(rootfs)


def test_hardlink_to_lower_layer_file(rootfs: Path) -> None:
    apply(rootfs, file("lib/libc.so", b"elf"))
    apply(rootfs, hardlink("lib/libc.so.6", "lib/libc.so"))
    assert (rootfs / "lib/libc.so.6").lstat().st_ino == (rootfs / "lib/libc.so").lstat().st_ino


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_diff_id_is_sha256_of_uncompressed_tar(rootfs: Path, compression: str) -> None:
    raw = tar_bytes(folder("a"), file("a/b", b"content" * 1000), symlink("c", "a/b"))
    compress: dict[str, Callable[[bytes], bytes]] = {
        "gzip": gzip.compress,
        "zstd": zstandard.ZstdCompressor().compress,
        "none": bytes,
    }
    blob = compress[compression](raw)
    result = extract_layer(io.BytesIO(blob), compression, rootfs)
    assert str(result.diff_id) == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert result.size == len(raw)


def test_max_bytes_exceeded(rootfs: Path) -> None:
    with pytest.raises(LayerError, match="limit"):
        apply(rootfs, file("big", b"x" * 100_000), max_bytes=50_000)
    assert not (rootfs / "big").exists()


def test_max_bytes_not_exceeded(rootfs: Path) -> None:
    result = apply(rootfs, file("small", b"x" * 10), max_bytes=1 << 20)
    assert result.bytes == 10


def test_corrupt_stream_is_layer_error(rootfs: Path) -> None:
    blob = gzip.compress(tar_bytes(file("a", b"x" * 5000)))[:-20]
    with pytest.raises(LayerError):
        extract_layer(io.BytesIO(blob), "gzip", rootfs)


# --- hostile layers -------------------------------------------------------------


def _outside_snapshot(tmp_path: Path, rootfs: Path) -> dict[str, bytes | str]:
    """Every path under tmp_path outside the rootfs, with its content or link target."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        here = Path(dirpath)
        if here == rootfs or rootfs in here.parents:
            continue
        for name in dirnames + filenames:
            path = here / name
            if path == rootfs:
                continue
            if path.is_symlink():
                out[str(path)] = os.readlink(path)
            elif path.is_file():
                out[str(path)] = path.read_bytes()
            else:
                out[str(path)] = "dir"
    return out


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    (path / "sentinel").write_bytes(b"untouched")
    return path


@pytest.mark.parametrize(
    ("make_lower", "upper", "raises", "inside"),
    [
        pytest.param(None, [file("../evil", b"x")], True, None, id="dotdot-file"),
        pytest.param(None, [file("a/../../evil", b"x")], True, None, id="dotdot-nested"),
        pytest.param(None, [file("/abs/path", b"x")], False, "abs/path", id="absolute-name"),
        pytest.param(
            None,
            [symlink("link", "/"), file("link/escape", b"x")],
            False,
            "escape",
            id="symlink-to-root",
        ),
        pytest.param(
            None,
            [symlink("link", "../../.."), file("link/escape", b"x")],
            False,
            "escape",
            id="symlink-dotdot",
        ),
        pytest.param(
            None,
            [symlink("link", "../outside"), file("link/sentinel", b"evil")],
            False,
            "outside/sentinel",
            id="symlink-relative-to-outside-sibling",
        ),
        pytest.param(
            "up->outside",
            [file("up/x", b"x")],
            False,
            "{outside}/x",
            id="lower-symlink-to-outside",
        ),
        pytest.param(
            "up->outside",
            [file("up/sentinel", b"evil")],
            False,
            "{outside}/sentinel",
            id="lower-symlink-overwrite-sentinel",
        ),
        pytest.param(
            "up->outside",
            [file("up/.wh.sentinel")],
            False,
            None,
            id="whiteout-through-lower-symlink",
        ),
        pytest.param(
            "s->sentinel",
            [file("s", b"evil")],
            False,
            "s",
            id="file-replaces-symlink-to-outside",
        ),
        pytest.param(None, [hardlink("h", "/etc/passwd")], True, None, id="hardlink-abs"),
        pytest.param(None, [hardlink("h", "../outside/sentinel")], True, None, id="hardlink-up"),
        pytest.param(
            "s->sentinel",
            [hardlink("h", "s"), file("h", b"evil")],
            False,
            "h",
            id="hardlink-to-symlink-then-write",
        ),
        pytest.param(None, [file(".wh...")], True, None, id="whiteout-dotdot"),
        pytest.param(None, [file("../outside/.wh.sentinel")], True, None, id="whiteout-climbs"),
        pytest.param(
            None,
            [symlink("a", "b"), symlink("b", "a"), file("a/x", b"x")],
            True,
            None,
            id="symlink-loop",
        ),
    ],
)
def test_hostile_layer_stays_inside(  # noqa: PLR0917 - fixtures plus one table row
    tmp_path: Path,
    rootfs: Path,
    outside: Path,
    make_lower: str | None,
    upper: list[Entry],
    raises: bool,
    inside: str | None,
) -> None:
    if make_lower == "up->outside":
        (rootfs / "up").symlink_to(outside)
    elif make_lower == "s->sentinel":
        (rootfs / "s").symlink_to(outside / "sentinel")
    before = _outside_snapshot(tmp_path, rootfs)
    if raises:
        with pytest.raises(LayerError) as caught:
            apply(rootfs, *upper)
        assert upper[-1].name in str(caught.value)
    else:
        apply(rootfs, *upper)
    assert (outside / "sentinel").read_bytes() == b"untouched"
    assert _outside_snapshot(tmp_path, rootfs) == before
    if inside is not None:
        rel = inside.format(outside=str(outside).lstrip("/"))
        assert (rootfs / rel).lstat()
        assert not (rootfs / rel).is_symlink()
