"""The snapshot benchmark's tree (bench/micro/snapshots.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.micro.snapshots import make_tree


@pytest.mark.parametrize("files", [1, 99, 100, 1001])
def test_tree_holds_what_make_tree_counts(files: int, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    entries = make_tree(root, files)
    found = list(root.rglob("*"))
    assert entries == len(found)
    leaves = [p for p in found if p.parent.name.startswith("d") and not p.is_dir()]
    assert len(leaves) == files
    links = [p for p in leaves if p.is_symlink()]
    assert len(links) == files // 100 * 5 + files % 100 // 20
    assert all(link.resolve().is_file() for link in links)
    assert (root / "etc" / "hosts").is_file() and (root / "proc").is_dir()


def test_tree_refuses_a_root_that_exists(tmp_path: Path) -> None:
    with pytest.raises(FileExistsError):
        make_tree(tmp_path, 10)
