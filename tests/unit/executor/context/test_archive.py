"""Unpacking a context tarball: hostile members are refused, nothing leaves the workspace."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from executor.context import ContextError, UnpackLimits, open_context, unpack_tar

Member = tuple[tarfile.TarInfo, bytes | None]


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def _entry(name: str, kind: bytes, link: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755
    return info, None


def _tar(path: Path, members: list[Member], *, gz: bool = False) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


HOSTILE: list[tuple[str, list[Member], str]] = [
    ("absolute", [_file("/etc/evil")], "'/etc/evil'"),
    ("dotdot", [_file("a/../../evil")], "'a/../../evil'"),
    ("dotdot-dir", [_entry("../d", tarfile.DIRTYPE)], "'../d'"),
    ("abs-symlink", [_entry("l", tarfile.SYMTYPE, "/etc")], "'l'"),
    ("up-symlink", [_entry("a/l", tarfile.SYMTYPE, "../../x")], "'a/l'"),
    # "t/.." is lexically "." but the kernel applies ".." to wherever t points.
    (
        "symlink-dotdot-trick",
        [_entry("t", tarfile.SYMTYPE, "."), _entry("s", tarfile.SYMTYPE, "t/..")],
        "'s'",
    ),
    (
        "write-through-symlink",
        [_entry("a", tarfile.DIRTYPE), _entry("a/l", tarfile.SYMTYPE, ".."), _file("a/l/x")],
        "'a/l/x'",
    ),
    ("char-device", [_entry("dev", tarfile.CHRTYPE)], "'dev'"),
    ("block-device", [_entry("blk", tarfile.BLKTYPE)], "'blk'"),
    ("fifo", [_entry("fifo", tarfile.FIFOTYPE)], "'fifo'"),
    ("hardlink-outside", [_entry("h", tarfile.LNKTYPE, "../../etc/passwd")], "'../../etc/passwd'"),
    ("hardlink-absolute", [_entry("h", tarfile.LNKTYPE, "/etc/passwd")], "'/etc/passwd'"),
    ("hardlink-missing", [_entry("h", tarfile.LNKTYPE, "nothere")], "'h'"),
    (
        "hardlink-through-symlink",
        [_entry("l", tarfile.SYMTYPE, "."), _file("f"), _entry("h", tarfile.LNKTYPE, "l/f")],
        "'h'",
    ),
    (
        "file-replaces-dir",
        [_entry("d", tarfile.DIRTYPE), _file("d/x"), _file("d")],
        "'d'",
    ),
]


@pytest.mark.parametrize(
    ("members", "named"), [(m, n) for _, m, n in HOSTILE], ids=[i for i, _, _ in HOSTILE]
)
def test_hostile_members_are_refused(tmp_path: Path, members: list[Member], named: str) -> None:
    archive = _tar(tmp_path / "ctx.tar", members)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = outside / "ws" / "context"
    with pytest.raises(ContextError) as caught:
        unpack_tar(archive, dest)
    assert named in str(caught.value)
    written = _tree(outside) - {"ws"}
    assert all(path.startswith("ws/context") for path in written)
    assert _tree(tmp_path) - {"ctx.tar"} == {"outside/" + path for path in _tree(outside)} | {
        "outside"
    }
    # Nothing was written through a link: the refused member's data is nowhere.
    assert not any(
        (outside / path).is_file()
        and not (outside / path).is_symlink()
        and (outside / path).read_bytes() == b"x"
        and path not in {"ws/context/d/x", "ws/context/f"}
        for path in written
    )


LIMIT_CASES: list[tuple[UnpackLimits, str]] = [
    (UnpackLimits(max_bytes=5), "'b'"),
    (UnpackLimits(max_members=1), "'b'"),
]


@pytest.mark.parametrize(("limits", "named"), LIMIT_CASES)
def test_limits(tmp_path: Path, limits: UnpackLimits, named: str) -> None:
    archive = _tar(tmp_path / "ctx.tar", [_file("a", b"1234"), _file("b", b"5678")])
    with pytest.raises(ContextError, match="limit") as caught:
        unpack_tar(archive, tmp_path / "out", limits=limits)
    assert named in str(caught.value)


def test_benign_tar_gz_unpacks(tmp_path: Path) -> None:
    members = [
        _entry("./", tarfile.DIRTYPE),
        _entry("./ro", tarfile.DIRTYPE),
        _file("./ro/f", b"data", mode=0o755),
        _entry("./ro/up", tarfile.SYMTYPE, "../top"),
        _file("./top", b"top"),
        _entry("./hard", tarfile.LNKTYPE, "top"),
        _file("./top2", b"first"),
        _file("./top2", b"second"),
    ]
    members[1][0].mode = 0o555
    archive = _tar(tmp_path / "ctx.tgz", members, gz=True)
    ctx = open_context(f"tar://{archive}", workspace=tmp_path / "ws")
    root = tmp_path / "ws" / "context"
    assert ctx.root == root.resolve()
    assert (root / "ro" / "f").read_bytes() == b"data"
    assert os.stat(root / "ro" / "f").st_mode & 0o777 == 0o755
    assert os.stat(root / "ro").st_mode & 0o777 == 0o555
    assert os.readlink(root / "ro" / "up") == "../top"
    assert os.stat(root / "hard").st_ino == os.stat(root / "top").st_ino
    assert (root / "top2").read_bytes() == b"second"


OPEN_ERRORS: list[tuple[Callable[[Path], str], str]] = [
    (lambda tmp: f"tar://{tmp}/missing.tar", "is not a file"),
    (lambda tmp: f"dir://{tmp}/missing", "is not a directory"),
    (lambda tmp: "git://example.com/x", "unsupported scheme"),
]


@pytest.mark.parametrize(("spec", "message"), OPEN_ERRORS)
def test_open_errors(tmp_path: Path, spec: Callable[[Path], str], message: str) -> None:
    with pytest.raises(ContextError, match=message):
        open_context(spec(tmp_path), workspace=tmp_path / "ws")


def test_not_a_tarball(tmp_path: Path) -> None:
    bogus = tmp_path / "ctx.tar"
    bogus.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ContextError, match="ctx.tar"):
        open_context(f"tar://{bogus}", workspace=tmp_path / "ws")
