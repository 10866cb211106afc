"""The Copier: files land where chroot would put them, even as the tree changes under it."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from executor.errors import LayerError
from executor.fs.copier import Copier, _copy_fd


def _source(tmp_path: Path, content: bytes = b"content") -> Path:
    path = tmp_path / "source"
    path.write_bytes(content)
    return path


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_copied_files_get_content_mode_owner_and_mtime(tmp_path: Path) -> None:
    src = _source(tmp_path, b"x" * 5000)
    root = tmp_path / "root"
    uid, gid = os.geteuid(), os.getegid()
    with Copier(root, uid=uid, gid=gid) as copier:
        copier.put_dir("/data", mode=0o40750, mtime_ns=7_000_000_000)
        for index in range(3):
            copier.copy_file(
                f"/data/sub/f{index}", src, mode=0o100640, size=5000, mtime_ns=index * 10**9
            )
    for index in range(3):
        st = os.lstat(root / f"data/sub/f{index}")
        assert (root / f"data/sub/f{index}").read_bytes() == b"x" * 5000
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, uid, gid)
        assert st.st_mtime_ns == index * 10**9
    # Directories made on the way get 0755; the one put explicitly keeps its mode and time.
    assert stat.S_IMODE(os.lstat(root / "data/sub").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(root / "data").st_mode) == 0o750
    assert os.lstat(root / "data").st_mtime_ns == 7_000_000_000


def test_a_file_over_a_file_replaces_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with Copier(root) as copier:
        copier.put_file("/f", io.BytesIO(b"old and longer"), mode=0o644)
        copier.copy_file("/f", _source(tmp_path, b"new"), mode=0o600, size=3)
    assert (root / "f").read_bytes() == b"new"


def test_a_file_over_a_directory_is_refused(tmp_path: Path) -> None:
    with Copier(tmp_path / "root") as copier:
        copier.put_dir("/d", mode=0o755)
        with pytest.raises(LayerError, match="cannot overwrite a directory with a file"):
            copier.copy_file("/d", _source(tmp_path), mode=0o644, size=7)


def test_a_directory_replaced_by_a_symlink_is_not_written_through(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with Copier(root) as copier:
        copier.put_dir("/target", mode=0o755)
        copier.put_file("/a/b/x", io.BytesIO(b"x"), mode=0o644)
        copier.put_symlink("/a/b", "/target")
        copier.put_file("/a/b/y", io.BytesIO(b"y"), mode=0o644)
    assert (root / "target/y").read_bytes() == b"y"
    assert os.readlink(root / "a/b") == "/target"


def test_a_symlink_replaced_by_a_directory_is_not_written_through(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with Copier(root) as copier:
        copier.put_dir("/target", mode=0o755)
        copier.put_symlink("/link", "/target")
        copier.put_file("/link/x", io.BytesIO(b"x"), mode=0o644)
        copier.put_dir("/link", mode=0o755)
        copier.put_file("/link/y", io.BytesIO(b"y"), mode=0o644)
    assert sorted(os.listdir(root / "target")) == ["x"]
    assert sorted(os.listdir(root / "link")) == ["y"]


def test_forget_dirs_sees_what_others_changed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with Copier(root) as copier:
        copier.put_dir("/target", mode=0o755)
        copier.put_file("/a/x", io.BytesIO(b"x"), mode=0o644)
        # Another writer (ADD unpacking a tarball) turns /a into a symlink.
        (root / "a").rename(root / "a-old")
        (root / "a").symlink_to("/target")
        copier.forget_dirs()
        copier.put_file("/a/y", io.BytesIO(b"y"), mode=0o644)
    assert (root / "target/y").read_bytes() == b"y"
    assert sorted(os.listdir(root / "a-old")) == ["x"]


def test_open_directories_stay_few_and_are_closed(tmp_path: Path) -> None:
    before = _open_fds()
    copier = Copier(tmp_path / "root")
    for index in range(100):
        copier.put_file(f"/d{index}/f", io.BytesIO(b"f"), mode=0o644)
    assert _open_fds() - before <= 20
    copier.close()
    assert _open_fds() == before


def test_a_source_swapped_for_a_symlink_is_refused(tmp_path: Path) -> None:
    secret = _source(tmp_path, b"secret")
    link = tmp_path / "link"
    link.symlink_to(secret)
    with Copier(tmp_path / "root") as copier, pytest.raises(LayerError, match="reading"):
        copier.copy_file("/f", link, mode=0o644, size=6)
    assert not (tmp_path / "root/f").exists()


@pytest.mark.parametrize("listed", [0, 3, 10, 100])
def test_a_file_is_copied_to_its_end_whatever_size_was_listed(tmp_path: Path, listed: int) -> None:
    # A file that grew or shrank since it was listed is copied as it is now.
    src = _source(tmp_path, b"0123456789")
    with Copier(tmp_path / "root") as copier:
        copier.copy_file("/f", src, mode=0o644, size=listed)
    assert (tmp_path / "root/f").read_bytes() == b"0123456789"


def test_copy_falls_back_to_read_and_write(tmp_path: Path) -> None:
    # copy_file_range refuses pipes (EINVAL): the bytes go through read and write.
    read_end, write_end = os.pipe()
    os.write(write_end, b"through a pipe")
    os.close(write_end)
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        _copy_fd(read_end, out, 14)
    finally:
        os.close(out)
        os.close(read_end)
    assert (tmp_path / "out").read_bytes() == b"through a pipe"
