from pathlib import Path

import pytest

from executor import users
from executor.users import Ids, UserError, resolve_chown, resolve_user


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\nbad:x:zz:1::/:/bin/sh\n"
    )
    (tmp_path / "etc/group").write_text("root:x:0:\nwebgrp:x:1001:\nextra:x:2000:web,other\n")
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "ids"),
    [
        ("", Ids(0, 0, (0,))),
        ("web", Ids(1000, 1001, (1001, 2000))),
        ("1000", Ids(1000, 1001, (1001, 2000))),
        ("web:extra", Ids(1000, 2000)),
        ("4242", Ids(4242, 0, (0,))),  # unknown uid: gid 0, as runc does
        ("4242:7", Ids(4242, 7)),
    ],
)
def test_resolve_user(rootfs: Path, spec: str, ids: Ids) -> None:
    assert resolve_user(rootfs, spec) == ids


@pytest.mark.parametrize(
    ("spec", "pair"),
    [
        ("web", (1000, 1001)),
        ("1000", (1000, 1000)),
        ("web:root", (1000, 0)),
        ("web:2000", (1000, 2000)),
        ("5", (5, 5)),
        (":extra", (0, 2000)),
    ],
)
def test_resolve_chown(rootfs: Path, spec: str, pair: tuple[int, int]) -> None:
    assert resolve_chown(rootfs, spec) == pair


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nobody-here", "user 'nobody-here' not found"),
        ("web:nogroup", "group 'nogroup'"),
        ("bad", "malformed id 'zz'"),
    ],
)
def test_errors(rootfs: Path, spec: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        resolve_user(rootfs, spec)


@pytest.mark.parametrize("spec", ["web:extra", "web:2000", "web", "1000:webgrp", "5", ":root"])
def test_resolve_chown_reads_each_file_at_most_once(
    rootfs: Path, spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[str] = []
    real = users._read_db

    def counting(root: Path, name: str) -> list[list[str]]:
        read.append(name)
        return real(root, name)

    monkeypatch.setattr(users, "_read_db", counting)
    resolve_chown(rootfs, spec)
    assert read.count("passwd") <= 1 and read.count("group") <= 1, read
