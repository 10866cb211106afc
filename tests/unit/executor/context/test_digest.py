"""File and COPY digests: content and mode count, mtime and owner do not."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from executor.context import BuildContext, ContextError, context_digest, file_digest


def _ctx(tmp_path: Path) -> BuildContext:
    root = tmp_path / "ctx"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "a.txt").write_text("alpha")
    (root / "src" / "pkg" / "b.txt").write_text("beta")
    (root / "src" / "link").symlink_to("a.txt")
    (root / "Dockerfile").write_text("FROM scratch")
    return BuildContext(root)


def _digest(ctx: BuildContext, sources: list[str] | None = None, **kwargs: object) -> str:
    return context_digest(ctx, ctx.resolve(sources or ["src"], **kwargs))  # type: ignore[arg-type]


def test_file_digest(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    expected = "sha256:" + hashlib.sha256(b"alpha").hexdigest()
    assert file_digest(ctx.root / "src" / "a.txt") == expected
    link = "sha256:" + hashlib.sha256(b"a.txt").hexdigest()
    assert file_digest(ctx.root / "src" / "link") == link
    with pytest.raises(ContextError, match="not a regular file"):
        file_digest(ctx.root / "src")
    with pytest.raises(ContextError, match="missing"):
        file_digest(ctx.root / "missing")


def _touch(root: Path) -> None:
    os.utime(root / "src" / "a.txt", (1, 1))
    os.utime(root / "src" / "pkg", (2, 2))
    os.utime(root / "src" / "link", (3, 3), follow_symlinks=False)


def _retarget_link(root: Path) -> None:
    (root / "src" / "link").unlink()
    (root / "src" / "link").symlink_to("pkg")


def _file_to_dir(root: Path) -> None:
    (root / "src" / "a.txt").unlink()
    (root / "src" / "a.txt").mkdir()


def _write(rel: str, text: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        (root / rel).write_text(text)

    return change


def _chmod(rel: str, mode: int) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        os.chmod(root / rel, mode)

    return change


def _rename(root: Path) -> None:
    (root / "src" / "a.txt").rename(root / "src" / "z.txt")


STABLE: list[Callable[[Path], None]] = [
    _touch,
    _write("unrelated.txt", "not copied"),
    _write("src/a.txt", "alpha"),  # rewritten, same bytes
]


@pytest.mark.parametrize("change", STABLE)
def test_digest_is_stable(tmp_path: Path, change: Callable[[Path], None]) -> None:
    ctx = _ctx(tmp_path)
    before = _digest(ctx)
    change(ctx.root)
    assert _digest(ctx) == before


CHANGES: list[Callable[[Path], None]] = [
    _write("src/a.txt", "alphA"),
    _chmod("src/a.txt", 0o600),
    _chmod("src/pkg", 0o700),
    _write("src/pkg/c.txt", ""),
    _rename,
    _retarget_link,
    _file_to_dir,
]


@pytest.mark.parametrize("change", CHANGES)
def test_digest_changes(tmp_path: Path, change: Callable[[Path], None]) -> None:
    ctx = _ctx(tmp_path)
    before = _digest(ctx)
    change(ctx.root)
    assert _digest(ctx) != before


def test_digest_depends_on_destination_layout(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    assert _digest(ctx, ["src"]) != _digest(ctx, ["src"], parents=True)
    assert _digest(ctx, ["src"]) != _digest(ctx, ["src"], excludes=["pkg"])
    assert _digest(ctx, ["src/a.txt", "Dockerfile"]) != _digest(ctx, ["Dockerfile", "src/a.txt"])


def test_digest_format(tmp_path: Path) -> None:
    value = _digest(_ctx(tmp_path))
    assert value.startswith("sha256:") and len(value) == 7 + 64
