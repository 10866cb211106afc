"""farm.contexts: deterministic packing, .dockerignore, verified and safe fetching."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from executor.oci.digest import Digest
from farm.contexts import (
    ContextFetchError,
    ContextPackError,
    PackedContext,
    context_key,
    fetch_context,
    pack_context,
    upload_context,
)

# Generous caps for fetch_context in tests that are not about the caps.
MAX_BYTES = 1 << 30
MAX_FILES = 10_000


class DirStore:
    """The three store calls, over a directory; counts uploads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.puts: list[str] = []

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def put_file(self, key: str, path: Path) -> None:
        self.puts.append(key)
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)

    def get_file(self, key: str, path: Path) -> None:
        shutil.copyfile(self.root / key, path)


def make_tree(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (root / "src").mkdir()
    (root / "src" / "main.py").write_text("print('hi')\n")
    (root / "src" / "run.sh").write_text("#!/bin/sh\n")
    (root / "src" / "run.sh").chmod(0o755)
    (root / "empty").mkdir()
    (root / "link").symlink_to("src/main.py")
    return root


def members(packed: PackedContext) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(packed.path, "r:gz") as tar:
        return {member.name: member for member in tar.getmembers()}


def test_same_tree_in_two_places_packs_to_the_same_bytes(tmp_path: Path) -> None:
    one = pack_context(make_tree(tmp_path / "a"), dest_dir=tmp_path / "out1")
    two = pack_context(make_tree(tmp_path / "b"), dest_dir=tmp_path / "out2")
    assert one.digest == two.digest
    assert one.path.read_bytes() == two.path.read_bytes()
    assert one.path == tmp_path / "out1" / f"{one.digest.hex}.tar.gz"
    assert one.size == one.path.stat().st_size
    assert Digest.of(one.path.read_bytes()) == one.digest


def test_touching_mtimes_does_not_change_the_digest(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "ctx")
    before = pack_context(tree, dest_dir=tmp_path / "out1")
    for path in [tree, *tree.rglob("*")]:
        os.utime(path, (1_000_000, 1_000_000), follow_symlinks=False)
    after = pack_context(tree, dest_dir=tmp_path / "out2")
    assert after.digest == before.digest


def test_content_and_mode_change_the_digest(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "ctx")
    base = pack_context(tree, dest_dir=tmp_path / "o1").digest
    (tree / "src" / "main.py").chmod(0o600)
    moded = pack_context(tree, dest_dir=tmp_path / "o2").digest
    (tree / "src" / "main.py").write_text("print('bye')\n")
    changed = pack_context(tree, dest_dir=tmp_path / "o3").digest
    assert len({base, moded, changed}) == 3


def test_headers_carry_no_times_or_owners(tmp_path: Path) -> None:
    packed = pack_context(make_tree(tmp_path / "ctx"), dest_dir=tmp_path / "out")
    raw = packed.path.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip MTIME field
    found = members(packed)
    assert list(found) == sorted(found)
    for member in found.values():
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (
            0,
            0,
            0,
            "",
            "",
        )
    assert stat.S_IMODE(found["src/run.sh"].mode) == 0o755
    assert found["empty"].isdir()


def test_symlinks_are_kept_as_symlinks(tmp_path: Path) -> None:
    packed = pack_context(make_tree(tmp_path / "ctx"), dest_dir=tmp_path / "out")
    link = members(packed)["link"]
    assert link.issym()
    assert link.linkname == "src/main.py"


def test_symlink_leaving_the_context_is_refused_at_pack_time(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "ctx")
    (tree / "escape").symlink_to("/etc/passwd")
    with pytest.raises(ContextPackError, match="symlink 'escape' -> '/etc/passwd'"):
        pack_context(tree, dest_dir=tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())  # no half-written archive left


def test_sockets_are_skipped(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "ctx")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tree / "daemon.sock"))
        packed = pack_context(tree, dest_dir=tmp_path / "out")
    assert "daemon.sock" not in members(packed)


def test_dockerignore_is_honoured_but_never_drops_dockerfile_or_itself(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "ctx")
    (tree / "node_modules").mkdir()
    (tree / "node_modules" / "big.js").write_text("x")
    (tree / "logs").mkdir()
    (tree / "logs" / "a.log").write_text("x")
    (tree / "logs" / "keep.log").write_text("x")
    (tree / ".dockerignore").write_text(
        "# comment\nnode_modules\nlogs\n!logs/keep.log\n*.sh\n**/*.sh\nDockerfile\n.dockerignore\n"
    )
    names = set(members(pack_context(tree, dest_dir=tmp_path / "out")))
    assert names == {
        ".dockerignore",
        "Dockerfile",
        "empty",
        "link",
        "logs",
        "logs/keep.log",
        "src",
        "src/main.py",
    }


def test_dockerfile_dockerignore_wins_over_dockerignore(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "ctx")
    (tree / "build").mkdir()
    (tree / "build" / "app.Dockerfile").write_text("FROM scratch\n")
    (tree / ".dockerignore").write_text("src\n")
    (tree / "build" / "app.Dockerfile.dockerignore").write_text("empty\nlink\n.dockerignore\n")
    names = set(
        members(pack_context(tree, dockerfile="build/app.Dockerfile", dest_dir=tmp_path / "out"))
    )
    assert "src/main.py" in names  # .dockerignore is not in use
    assert "empty" not in names
    assert "link" not in names
    assert ".dockerignore" not in names  # an ordinary, ignored file now
    assert {"build/app.Dockerfile", "build/app.Dockerfile.dockerignore"} <= names


def test_dockerfile_in_an_ignored_directory_is_still_sent(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "ctx")
    (tree / "docker").mkdir()
    (tree / "docker" / "Dockerfile").write_text("FROM scratch\n")
    (tree / "docker" / "other").write_text("x")
    (tree / ".dockerignore").write_text("docker\n")
    names = set(members(pack_context(tree, dockerfile="docker/Dockerfile", dest_dir=tmp_path)))
    assert "docker/Dockerfile" in names
    assert "docker/other" not in names


def test_missing_dockerfile_is_refused(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "ctx")
    with pytest.raises(ContextPackError, match="no Dockerfile 'Nope'"):
        pack_context(tree, dockerfile="Nope", dest_dir=tmp_path / "out")


# -- store round trip --------------------------------------------------------------------


def test_upload_skips_a_context_already_stored(tmp_path: Path) -> None:
    store = DirStore(tmp_path / "store")
    packed = pack_context(make_tree(tmp_path / "ctx"), dest_dir=tmp_path / "out")
    key = upload_context(store, packed)
    assert key == f"contexts/sha256/{packed.digest.hex}.tar.gz" == context_key(packed.digest)
    assert upload_context(store, packed) == key
    assert store.puts == [key]


def test_fetch_unpacks_what_was_packed(tmp_path: Path) -> None:
    store = DirStore(tmp_path / "store")
    packed = pack_context(make_tree(tmp_path / "ctx"), dest_dir=tmp_path / "out")
    upload_context(store, packed)
    workspace = tmp_path / "ws"
    root = fetch_context(store, packed.digest, workspace, max_bytes=MAX_BYTES, max_files=MAX_FILES)
    assert root == workspace / "context"
    assert (root / "src" / "main.py").read_text() == "print('hi')\n"
    assert os.readlink(root / "link") == "src/main.py"
    assert stat.S_IMODE((root / "src" / "run.sh").stat().st_mode) == 0o755
    assert (root / "empty").is_dir()


def test_fetch_refuses_a_tampered_archive(tmp_path: Path) -> None:
    store = DirStore(tmp_path / "store")
    packed = pack_context(make_tree(tmp_path / "ctx"), dest_dir=tmp_path / "out")
    key = upload_context(store, packed)
    stored = store.root / key
    data = bytearray(stored.read_bytes())
    data[-10] ^= 0xFF
    stored.write_bytes(bytes(data))
    workspace = tmp_path / "ws"
    with pytest.raises(ContextFetchError, match="digest mismatch") as info:
        fetch_context(store, packed.digest, workspace, max_bytes=MAX_BYTES, max_files=MAX_FILES)
    assert info.value.temporary is False
    assert not (workspace / "context").exists()


def test_fetch_enforces_the_limits(tmp_path: Path) -> None:
    store = DirStore(tmp_path / "store")
    packed = pack_context(make_tree(tmp_path / "ctx"), dest_dir=tmp_path / "out")
    upload_context(store, packed)
    with pytest.raises(ContextFetchError, match="limit of 3 members"):
        fetch_context(store, packed.digest, tmp_path / "ws", max_bytes=MAX_BYTES, max_files=3)


def hostile_archive() -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name in ("Dockerfile", "../escaped"):
            member = tarfile.TarInfo(name)
            member.size = 3
            tar.addfile(member, io.BytesIO(b"bad"))
    return buffer.getvalue()


def test_fetch_refuses_a_hostile_archive_and_writes_nothing_outside(tmp_path: Path) -> None:
    data = hostile_archive()
    digest = Digest.of(data)
    store = DirStore(tmp_path / "store")
    (store.root / "contexts" / "sha256").mkdir(parents=True)
    (store.root / context_key(digest)).write_bytes(data)
    jail = tmp_path / "jail"
    workspace = jail / "ws"
    with pytest.raises(ContextFetchError, match="'../escaped' contains '..'"):
        fetch_context(store, digest, workspace, max_bytes=MAX_BYTES, max_files=MAX_FILES)
    assert not (workspace / "escaped").exists()
    assert not (jail / "escaped").exists()
    assert sorted(path.name for path in jail.iterdir()) == ["ws"]


def test_output_directory_inside_the_context_is_not_packed(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "ctx")
    outside = pack_context(tree, dest_dir=tmp_path / "out")
    inside = pack_context(tree, dest_dir=tree / ".farm")
    again = pack_context(tree, dest_dir=tree / ".farm")
    assert inside.digest == outside.digest == again.digest
