"""Tests for executor/fs/layer.py: layers written to disk and read back with tarfile."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import socket
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from executor.errors import LayerError
from executor.fs.changes import Change, ChangeKind
from executor.fs.compression import decompressed, sniff
from executor.fs.layer import LayerOptions, WrittenLayer, write_layer
from executor.oci.digest import Digest
from executor.oci.mediatype import MediaType

ADDED = ChangeKind.ADDED_OR_MODIFIED
DELETED = ChangeKind.DELETED
OPAQUE = ChangeKind.OPAQUE_DIR
# Security.capability v2 for cap_net_raw, as setcap writes it; not valid UTF-8.
CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")
# An arbitrary fixed time (2009-02-13) with a fraction, to see it dropped.
OLD_MTIME = 1_234_567_890.75
# SOURCE_DATE_EPOCH for the clamping tests (2001-09-09), earlier than any file made now.
EPOCH = 1_000_000_000
EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def read_layer(layer: WrittenLayer) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Every entry of a layer with its content, decompressed and read in stream mode."""
    out = []
    with open(layer.path, "rb") as f:
        stream = decompressed(f, layer.compression)
        with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8") as tar:
            for info in tar:
                data = b""
                if info.isreg():
                    member = tar.extractfile(info)
                    assert member is not None
                    data = member.read()
                out.append((info, data))
    return out


def names(layer: WrittenLayer) -> list[str]:
    return [info.name for info, _ in read_layer(layer)]


def entry(layer: WrittenLayer, name: str) -> tarfile.TarInfo:
    found = [info for info, _ in read_layer(layer) if info.name == name]
    assert len(found) == 1, f"{name!r} appears {len(found)} times"
    return found[0]


def uncompressed_bytes(layer: WrittenLayer) -> bytes:
    with open(layer.path, "rb") as f:
        stream = decompressed(f, layer.compression)
        chunks = []
        while chunk := stream.read(1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def write(
    tmp_path: Path,
    root: Path,
    changes: list[Change] | None = None,
    *,
    compression: str = "gzip",
    source_date_epoch: int | None = None,
) -> WrittenLayer:
    """Write a layer of ``root`` to a fresh file under ``tmp_path/out``."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    dest = out / f"layer-{len(list(out.iterdir()))}"
    options = LayerOptions(compression=compression, source_date_epoch=source_date_epoch)
    return write_layer(root, changes, dest, options=options)


def test_whole_tree_entries_are_sorted_by_bytes_with_parents_first(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "root",
        {"b/z": b"", "a-b": b"", "a/c": b"", "a/B": b"", "A": b"", "a/c2/d": b""},
    )
    layer = write(tmp_path, root)
    # Per directory by bytes ("A" < "a" < "a-b" < "b"), each directory before its children.
    assert names(layer) == ["A", "a", "a/B", "a/c", "a/c2", "a/c2/d", "a-b", "b", "b/z"]


def test_changes_emit_missing_parents_from_the_rootfs(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"usr/lib/x/y.so": b"so", "usr/bin/tool": b"t"})
    (root / "usr" / "lib").chmod(0o750)
    layer = write(tmp_path, root, [Change("usr/lib/x/y.so", ADDED)])
    assert names(layer) == ["usr", "usr/lib", "usr/lib/x", "usr/lib/x/y.so"]
    assert entry(layer, "usr/lib").isdir()
    assert entry(layer, "usr/lib").mode == 0o750


def test_changes_in_any_order_come_out_sorted(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"b": b"", "a/z": b"", "a/y": b""})
    changes = [Change(p, ADDED) for p in ("b", "a/z", "a/y", "a", "b")]
    assert names(write(tmp_path, root, changes)) == ["a", "a/y", "a/z", "b"]


def test_owner_is_numeric_with_empty_names(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"f": b"x"})
    try:
        os.chown(root / "f", 1234, 5678)
    except PermissionError:
        pytest.skip("chown needs root or CAP_CHOWN")
    info = entry(write(tmp_path, root), "f")
    assert (info.uid, info.gid, info.uname, info.gname) == (1234, 5678, "", "")


@pytest.mark.parametrize(
    ("kind", "mode"),
    [
        ("file", 0o644),
        ("file", 0o600),
        ("file", 0o4755),  # setuid
        ("file", 0o2755),  # setgid
        ("dir", 0o1777),  # sticky, like /tmp
        ("dir", 0o2770),
    ],
)
def test_mode_bits_are_kept(tmp_path: Path, kind: str, mode: int) -> None:
    root = tmp_path / "root"
    root.mkdir()
    path = root / "x"
    if kind == "dir":
        path.mkdir()
    else:
        path.write_bytes(b"")
    path.chmod(mode)
    assert entry(write(tmp_path, root), "x").mode == mode


@pytest.mark.parametrize("target", ["b/f", "/etc/passwd", "../../outside", "dangling"])
def test_symlinks_keep_their_target(tmp_path: Path, target: str) -> None:
    root = make_tree(tmp_path / "root", {"b/f": b"data"})
    (root / "link").symlink_to(target)
    info = entry(write(tmp_path, root), "link")
    assert info.issym()
    assert info.linkname == target


def test_second_name_of_an_inode_is_a_hardlink_to_the_first(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"a/one": b"shared"})
    os.link(root / "a/one", root / "b-two")
    os.link(root / "a/one", root / "c-three")
    entries = {info.name: (info, data) for info, data in read_layer(write(tmp_path, root))}
    first, data = entries["a/one"]
    assert first.isreg()
    assert data == b"shared"
    for name in ("b-two", "c-three"):
        link, _ = entries[name]
        assert link.islnk()
        assert link.linkname == "a/one"
        assert link.size == 0


def test_hardlink_whose_first_name_is_not_in_the_layer_is_a_regular_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"lower": b"shared"})
    os.link(root / "lower", root / "upper")
    [(info, data)] = read_layer(write(tmp_path, root, [Change("upper", ADDED)]))
    assert info.name == "upper"
    assert info.isreg()
    assert data == b"shared"


def test_fifo(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "pipe")
    (root / "pipe").chmod(0o620)
    info = entry(write(tmp_path, root), "pipe")
    assert info.isfifo()
    assert info.mode == 0o620


@pytest.mark.parametrize(
    ("kind", "check"),
    [(stat.S_IFCHR, tarfile.TarInfo.ischr), (stat.S_IFBLK, tarfile.TarInfo.isblk)],
)
def test_devices_keep_major_and_minor(
    tmp_path: Path, kind: int, check: Callable[[tarfile.TarInfo], bool]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    try:
        os.mknod(root / "dev", kind | 0o660, os.makedev(259, 70000))
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    info = entry(write(tmp_path, root), "dev")
    assert check(info)
    assert (info.devmajor, info.devminor) == (259, 70000)


def test_sockets_are_skipped(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"f": b""})
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        assert names(write(tmp_path, root)) == ["f"]


def test_long_path_round_trips(tmp_path: Path) -> None:
    name = "/".join(["d" * 60, "e" * 60, "f" * 78])  # 200 characters
    assert len(name) == 200
    root = make_tree(tmp_path / "root", {name: b"deep"})
    (root / "l").symlink_to(name)
    entries = {info.name: (info, data) for info, data in read_layer(write(tmp_path, root))}
    assert entries[name][1] == b"deep"
    assert entries["l"][0].linkname == name


def test_non_utf8_name_round_trips(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    raw = b"caf\xe9"  # latin-1, not UTF-8
    with open(os.path.join(os.fsencode(root), raw), "wb") as f:
        f.write(b"x")
    [name] = names(write(tmp_path, root))
    assert os.fsencode(name) == raw


def xattrs_of(info: tarfile.TarInfo) -> dict[str, bytes]:
    prefix = "SCHILY.xattr."
    return {
        key[len(prefix) :]: value.encode("utf-8", "surrogateescape")
        for key, value in info.pax_headers.items()
        if key.startswith(prefix)
    }


def set_xattr_or_skip(path: Path, name: str, value: bytes) -> None:
    try:
        os.setxattr(path, name, value)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM, errno.EACCES):
            pytest.skip(f"the test filesystem refuses {name} xattrs: {exc.strerror}")
        raise


@pytest.mark.parametrize(
    ("name", "value"),
    [("user.test", b"v"), ("security.capability", CAP_NET_RAW), ("user.empty", b"")],
)
def test_xattr_round_trips_as_pax_record(tmp_path: Path, name: str, value: bytes) -> None:
    root = make_tree(tmp_path / "root", {"f": b""})
    set_xattr_or_skip(root / "f", name, value)
    info = entry(write(tmp_path, root), "f")
    assert xattrs_of(info) == {name: value}
    # No hdrcharset record, which GNU tar warns about (see tarwriter's docstring).
    assert "hdrcharset" not in info.pax_headers


def test_overlay_and_selinux_xattrs_stay_out(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"f": b""})
    set_xattr_or_skip(root / "f", "trusted.overlay.opaque", b"y")
    set_xattr_or_skip(root / "f", "user.keep", b"k")
    assert xattrs_of(entry(write(tmp_path, root), "f")) == {"user.keep": b"k"}


def test_whiteout_and_opaque_entries(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"etc/new.conf": b"n", "var/cache/fresh": b"f"})
    changes = [
        Change("etc/old.conf", DELETED),
        Change("etc/new.conf", ADDED),
        Change("var/cache", OPAQUE),
        Change("var/cache/fresh", ADDED),
        Change("top", DELETED),
    ]
    entries = read_layer(write(tmp_path, root, changes))
    # Whiteouts come before their siblings (image-spec layer.md "Whiteouts").
    assert [info.name for info, _ in entries] == [
        ".wh.top",
        "etc",
        "etc/.wh.old.conf",
        "etc/new.conf",
        "var",
        "var/cache",
        "var/cache/.wh..wh..opq",
        "var/cache/fresh",
    ]
    for info, data in entries:
        if os.path.basename(info.name).startswith(".wh."):
            assert info.isreg()
            assert (data, info.mode, info.uid, info.gid, info.mtime) == (b"", 0, 0, 0, 0)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_digest_and_diff_id_match_the_bytes(tmp_path: Path, compression: str) -> None:
    root = make_tree(tmp_path / "root", {"a/b": os.urandom(300_000), "c": b"hello"})
    layer = write(tmp_path, root, compression=compression)
    blob = layer.path.read_bytes()
    tar_bytes = uncompressed_bytes(layer)
    assert layer.digest == Digest.of(blob)
    assert layer.diff_id == Digest("sha256", hashlib.sha256(tar_bytes).hexdigest())
    assert (layer.size, layer.uncompressed_size) == (len(blob), len(tar_bytes))
    assert sniff(blob[:4]) == compression
    # POSIX end-of-archive: exactly two zero blocks, no record padding after them.
    assert len(tar_bytes) % 512 == 0
    assert tar_bytes[-1024:] == bytes(1024)
    assert tar_bytes[-1536:-1024] != bytes(512)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_files_of_many_chunks_keep_every_chunk(tmp_path: Path, compression: str) -> None:
    # Files are read chunk by chunk into one reused buffer: each chunk must be
    # hashed, compressed and written before the next read overwrites it.
    text = b"".join(b"line %d of a text file\n" % i for i in range(150_000))
    files = {"random": os.urandom(2_500_000), "text": text, "tail": os.urandom(1 << 20)}
    root = make_tree(tmp_path / "root", files)
    layer = write(tmp_path, root, compression=compression)
    assert {info.name: data for info, data in read_layer(layer)} == files
    assert layer.diff_id == Digest("sha256", hashlib.sha256(uncompressed_bytes(layer)).hexdigest())


def test_empty_change_list_is_the_well_known_empty_layer(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"unchanged": b""})
    layer = write(tmp_path, root, [], compression="none")
    # The diff_id docker and BuildKit give an empty layer: two zero blocks, nothing else.
    assert str(layer.diff_id) == EMPTY_LAYER_DIFF_ID
    assert layer.uncompressed_size == 1024


def test_same_tree_with_touched_mtimes_and_source_date_epoch_is_reproducible(
    tmp_path: Path,
) -> None:
    root = make_tree(tmp_path / "root", {"a/b": b"1", "c": b"2"})
    first = write(tmp_path, root, source_date_epoch=EPOCH)
    for path in [root / "a", root / "a/b", root / "c"]:
        os.utime(path, (OLD_MTIME + 10**8, OLD_MTIME + 10**8))  # later than EPOCH
    second = write(tmp_path, root, source_date_epoch=EPOCH)
    assert first.digest == second.digest
    assert first.diff_id == second.diff_id
    assert {info.mtime for info, _ in read_layer(second)} == {EPOCH}


def test_mtimes_before_source_date_epoch_are_kept(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"old": b"", "new": b""})
    os.utime(root / "old", (OLD_MTIME, OLD_MTIME))
    layer = write(tmp_path, root, source_date_epoch=int(OLD_MTIME) + 100)
    assert entry(layer, "old").mtime == int(OLD_MTIME)
    assert entry(layer, "new").mtime == int(OLD_MTIME) + 100


def test_without_source_date_epoch_mtimes_are_kept_in_whole_seconds(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"f": b""})
    os.utime(root / "f", (OLD_MTIME, OLD_MTIME))
    info = entry(write(tmp_path, root), "f")
    assert info.mtime == int(OLD_MTIME)
    assert "mtime" not in info.pax_headers
    assert "atime" not in info.pax_headers
    assert "ctime" not in info.pax_headers


@pytest.mark.parametrize(
    "path", ["../etc/passwd", "a/../../b", "/etc/passwd", "./a", "a//b", "a/", "", "a/.wh.b"]
)
def test_bad_change_path_is_rejected_naming_it(path: str) -> None:
    with pytest.raises(LayerError) as caught:
        Change(path, ADDED)
    assert repr(path) in str(caught.value)


@pytest.mark.parametrize(
    ("setup", "changes", "message"),
    [
        pytest.param(
            lambda root: None,
            [Change("missing", ADDED)],
            "missing: No such file or directory",
            id="missing-file",
        ),
        pytest.param(
            lambda root: (root / "outside").symlink_to("/etc"),
            [Change("outside/passwd", ADDED)],
            "outside: parent is not a directory",
            id="symlinked-parent",
        ),
        pytest.param(
            lambda root: (root / "still").write_bytes(b""),
            [Change("still", DELETED)],
            "still: listed as deleted but present",
            id="deleted-but-present",
        ),
        pytest.param(
            lambda root: (root / "f").write_bytes(b""),
            [Change("f", OPAQUE)],
            "f: opaque-dir is not a directory",
            id="opaque-file",
        ),
        pytest.param(
            lambda root: (root / "f").write_bytes(b""),
            [Change("f", ADDED), Change("f", DELETED)],
            "'f': listed as both added-or-modified and deleted",
            id="contradiction",
        ),
        pytest.param(
            lambda root: (root / ".wh.sneaky").write_bytes(b""),
            None,
            ".wh.sneaky: names starting with .wh. are reserved",
            id="whiteout-name-in-rootfs",
        ),
    ],
)
def test_bad_input_raises_layer_error_and_leaves_no_file(
    tmp_path: Path,
    setup: Callable[[Path], object],
    changes: list[Change] | None,
    message: str,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    setup(root)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(LayerError, match=message):
        write_layer(root, changes, out / "layer.tar.gz")
    assert list(out.iterdir()) == []


def test_unreadable_file_names_the_path_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(tmp_path / "root", {"a": b"a", "secret": b"s" * 5000})
    real_open = os.open

    def refusing_open(path: bytes, flags: int, mode: int = 0o777) -> int:
        # Permission bits do not stop root, so the refusal is simulated at open(2).
        if os.fsencode(path).endswith(b"/secret"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", refusing_open)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(LayerError, match="reading .*/root/secret: Permission denied") as caught:
        write_layer(root, None, out / "layer.tar.gz")
    assert isinstance(caught.value.__cause__, PermissionError)
    assert list(out.iterdir()) == []


def test_dest_inside_the_rootfs_is_refused(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"f": b""})
    with pytest.raises(LayerError, match="inside the rootfs"):
        write_layer(root, None, root / "layer.tar.gz")
    assert sorted(p.name for p in root.iterdir()) == ["f"]


def test_failed_rename_leaves_no_partial_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"f": b"x"})
    out = tmp_path / "out"
    (out / "layer.tar.gz" / "occupied").mkdir(parents=True)
    with pytest.raises(LayerError, match="writing layer .*layer.tar.gz: Is a directory"):
        write_layer(root, None, out / "layer.tar.gz")
    assert [p.name for p in out.iterdir()] == ["layer.tar.gz"]


def test_an_existing_dest_is_replaced_whole(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"f": b"x"})
    dest = tmp_path / "layer.tar"
    dest.write_bytes(b"stale" * 10_000)
    layer = write_layer(root, None, dest, options=LayerOptions(compression="none"))
    assert Digest.of(dest.read_bytes()) == layer.digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer.tar", "root"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compression": "bzip2"}, "unknown compression 'bzip2'"),
        ({"compression": "gzip", "level": 10}, "gzip compression level 10"),
        ({"compression": "zstd", "level": 0}, "zstd compression level 0"),
        ({"source_date_epoch": -1}, "SOURCE_DATE_EPOCH -1"),
    ],
)
def test_bad_options_are_rejected(options: dict[str, object], message: str) -> None:
    with pytest.raises(LayerError, match=message):
        LayerOptions(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("compression", "manifest_type", "want"),
    [
        ("gzip", MediaType.OCI_MANIFEST, MediaType.OCI_LAYER_GZIP),
        ("zstd", MediaType.OCI_MANIFEST, MediaType.OCI_LAYER_ZSTD),
        ("none", MediaType.OCI_MANIFEST, MediaType.OCI_LAYER),
        ("gzip", MediaType.DOCKER_MANIFEST, MediaType.DOCKER_LAYER_GZIP),
        ("none", MediaType.DOCKER_MANIFEST, MediaType.DOCKER_LAYER),
    ],
)
def test_media_type(compression: str, manifest_type: str, want: MediaType) -> None:
    layer = WrittenLayer(Path("l"), Digest.of(b""), Digest.of(b""), 0, 0, compression)
    assert layer.media_type(manifest_type) == want


def test_zstd_layer_has_no_docker_media_type() -> None:
    layer = WrittenLayer(Path("l"), Digest.of(b""), Digest.of(b""), 0, 0, "zstd")
    with pytest.raises(LayerError, match="zstd layers need an OCI manifest"):
        layer.media_type(MediaType.DOCKER_MANIFEST)


def test_gnu_tar_lists_the_layer_without_complaint(tmp_path: Path) -> None:
    tar = shutil.which("tar")
    assert tar is not None, "GNU tar is not on PATH: install the Debian package 'tar'"
    long_name = "/".join(["x" * 90, "y" * 90, "z" * 90])
    root = make_tree(tmp_path / "root", {long_name: b"long", "bin/ping": b"\x7fELF"})
    os.link(root / "bin/ping", root / "bin/ping6")
    (root / "bin/sh").symlink_to("busybox")
    os.mkfifo(root / "fifo")
    with contextlib.suppress(OSError):  # a binary xattr if the filesystem takes one
        os.setxattr(root / "bin/ping", "security.capability", CAP_NET_RAW)
    whole = write(tmp_path, root, source_date_epoch=EPOCH)
    changes = write(tmp_path, root, [Change(long_name, ADDED), Change("gone", DELETED)])
    for layer, want in [
        (whole, [f"{long_name}", "bin/ping6 link to bin/ping", "bin/sh -> busybox", "fifo"]),
        (changes, [f"{long_name}", ".wh.gone"]),
    ]:
        done = subprocess.run(
            [tar, "--xattrs", "-tvvf", str(layer.path)], capture_output=True, text=True, check=False
        )
        assert (done.returncode, done.stderr) == (0, "")
        listed = done.stdout.splitlines()
        for name in want:
            assert any(line.endswith(f" {name}") for line in listed), (name, listed)
