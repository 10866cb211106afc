"""Resolving COPY/ADD sources in a context: ignore files, wildcards, --parents, symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from executor.context import BuildContext, ContextError, FileKind, open_context


def _make(root: Path, files: dict[str, str]) -> Path:
    """Create ``files`` under ``root``; a value "->target" makes a symlink, "/" a dir."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith("->"):
            path.symlink_to(content[2:])
        elif content == "/":
            path.mkdir(exist_ok=True)
        else:
            path.write_text(content)
    return root


TREE = {
    "Dockerfile": "FROM scratch",
    "app.py": "print()",
    "lib/a.py": "a",
    "lib/b.txt": "b",
    "lib/sub/c.py": "c",
    "docs/keep.md": "keep",
    "docs/drop.md": "drop",
    "secret.key": "s",
    "notes.txt": "n",
}


def _context(tmp_path: Path, ignore: str = "", files: dict[str, str] | None = None) -> BuildContext:
    tree = dict(TREE, **(files or {}))
    if ignore:
        tree[".dockerignore"] = ignore
    return BuildContext(_make(tmp_path / "ctx", tree))


# (ignore, sources, excludes, parents, [(rel_path, is_dir, dest)])
ResolveCase = tuple[str, list[str], list[str], bool, list[tuple[str, bool, str]]]
RESOLVE_CASES: list[ResolveCase] = [
    ("", ["app.py"], [], False, [("app.py", False, "app.py")]),
    ("", ["/lib/../app.py"], [], False, [("app.py", False, "app.py")]),
    ("", ["lib/sub/c.py"], [], False, [("lib/sub/c.py", False, "c.py")]),
    ("", ["lib"], [], False, [("lib", True, "")]),
    ("", ["."], [], False, [("", True, "")]),
    ("", ["lib/*.py"], [], False, [("lib/a.py", False, "a.py")]),
    ("", ["*/*.py"], [], False, [("lib/a.py", False, "a.py")]),
    ("", ["l?b/[ab].*"], [], False, [("lib/a.py", False, "a.py"), ("lib/b.txt", False, "b.txt")]),
    ("", ["nomatch*"], [], False, []),  # BuildKit: AllowEmptyWildcard
    ("", ["lib/sub/c.py"], [], True, [("lib/sub/c.py", False, "lib/sub/c.py")]),
    ("", ["lib/sub"], [], True, [("lib/sub", True, "lib/sub")]),
    ("", ["lib/./sub/c.py"], [], True, [("lib/sub/c.py", False, "sub/c.py")]),
    ("", ["*/*.py"], [], True, [("lib/a.py", False, "lib/a.py")]),
    ("", ["lib/*"], ["*.txt"], False, [("lib/a.py", False, "a.py"), ("lib/sub", True, "")]),
    (
        "*.key",
        ["*"],
        [],
        False,
        [
            ("Dockerfile", False, "Dockerfile"),
            ("app.py", False, "app.py"),
            ("docs", True, ""),
            ("lib", True, ""),
            ("notes.txt", False, "notes.txt"),
        ],
    ),
    ("docs\n!docs/keep.md", ["docs/*"], [], False, [("docs/keep.md", False, "keep.md")]),
    ("docs\n!docs/keep.md", ["docs"], [], False, [("docs", True, "")]),
]


@pytest.mark.parametrize("case", RESOLVE_CASES)
def test_resolve(tmp_path: Path, case: ResolveCase) -> None:
    ignore, sources, excludes, parents, expected = case
    ctx = _context(tmp_path, ignore)
    matches = ctx.resolve(sources, excludes=excludes, parents=parents)
    got = [(m.rel_path, m.is_dir, m.dest) for m in matches]
    assert [item for item in got if item[0] != ".dockerignore"] == expected
    for match in matches:
        assert match.host_path == (ctx.root / match.rel_path if match.rel_path else ctx.root)


NOT_FOUND_CASES = [
    ("", "missing.txt"),
    ("", "lib/missing"),
    ("*.key", "secret.key"),  # ignored files are invisible to COPY
    ("docs", "docs/keep.md"),
    ("Dockerfile\n.dockerignore", "Dockerfile"),
    ("", "../../etc/passwd"),  # cleaned to /etc/passwd inside the context
]


@pytest.mark.parametrize(("ignore", "source"), NOT_FOUND_CASES)
def test_missing_or_ignored_source_is_an_error(tmp_path: Path, ignore: str, source: str) -> None:
    ctx = _context(tmp_path, ignore)
    with pytest.raises(ContextError, match="no source files were specified") as caught:
        ctx.resolve([source])
    assert repr(source) in str(caught.value)


def _walk(ctx: BuildContext, sources: list[str], **kwargs: object) -> list[tuple[str, str, str]]:
    matches = ctx.resolve(sources, **kwargs)  # type: ignore[arg-type]
    return [(f.rel_path, f.dest, f.kind.value) for m in matches for f in ctx.walk(m)]


WALK_CASES: list[tuple[str, list[str], list[str], list[tuple[str, str, str]]]] = [
    (
        "",
        ["lib"],
        [],
        [
            ("lib/a.py", "a.py", "file"),
            ("lib/b.txt", "b.txt", "file"),
            ("lib/sub", "sub", "dir"),
            ("lib/sub/c.py", "sub/c.py", "file"),
        ],
    ),
    ("**/*.py", ["lib"], [], [("lib/b.txt", "b.txt", "file"), ("lib/sub", "sub", "dir")]),
    ("", ["lib"], ["sub"], [("lib/a.py", "a.py", "file"), ("lib/b.txt", "b.txt", "file")]),
    (
        "",
        ["lib"],
        ["*.py", "!sub/c.py"],
        [
            ("lib/b.txt", "b.txt", "file"),
            ("lib/sub", "sub", "dir"),
            ("lib/sub/c.py", "sub/c.py", "file"),
        ],
    ),
    ("docs\n!docs/keep.md", ["docs"], [], [("docs/keep.md", "keep.md", "file")]),
    (
        "lib/sub\n!lib/sub/c.py",
        ["lib"],
        [],
        [
            ("lib/a.py", "a.py", "file"),
            ("lib/b.txt", "b.txt", "file"),
            ("lib/sub", "sub", "dir"),  # an ignored parent of a kept file is sent along
            ("lib/sub/c.py", "sub/c.py", "file"),
        ],
    ),
    (
        "lib/sub",
        ["app.py", "lib/a.py"],
        [],
        [
            ("app.py", "app.py", "file"),
            ("lib/a.py", "a.py", "file"),
        ],
    ),
]


@pytest.mark.parametrize(("ignore", "sources", "excludes", "expected"), WALK_CASES)
def test_walk(
    tmp_path: Path,
    ignore: str,
    sources: list[str],
    excludes: list[str],
    expected: list[tuple[str, str, str]],
) -> None:
    assert _walk(_context(tmp_path, ignore), sources, excludes=excludes) == expected


def test_walk_with_parents_keeps_the_path(tmp_path: Path) -> None:
    got = _walk(_context(tmp_path), ["lib/sub"], parents=True)
    assert got == [("lib/sub/c.py", "lib/sub/c.py", "file")]


# ---------------------------------------------------------------- ignore files


IGNORE_FILE_CASES = [
    # (files, dockerfile, ignored?, visible?)
    ({".dockerignore": "a.txt"}, "Dockerfile", "a.txt", "b.txt"),
    (
        {".dockerignore": "a.txt", "Dockerfile.dockerignore": "b.txt"},
        "Dockerfile",
        "b.txt",
        "a.txt",
    ),
    (
        {
            ".dockerignore": "a.txt",
            "build/app.Dockerfile": "FROM x",
            "build/app.Dockerfile.dockerignore": "b.txt",
        },
        "build/app.Dockerfile",
        "b.txt",
        "a.txt",
    ),
    # An ignore file beside another Dockerfile does not apply.
    ({".dockerignore": "a.txt", "Other.dockerignore": "b.txt"}, "Dockerfile", "a.txt", "b.txt"),
]


@pytest.mark.parametrize(("files", "dockerfile", "ignored", "visible"), IGNORE_FILE_CASES)
def test_ignore_file_precedence(
    tmp_path: Path, files: dict[str, str], dockerfile: str, ignored: str, visible: str
) -> None:
    root = _make(tmp_path / "ctx", {"Dockerfile": "FROM x", "a.txt": "a", "b.txt": "b", **files})
    ctx = open_context(f"dir://{root}", dockerfile=dockerfile, workspace=tmp_path / "ws")
    assert [m.rel_path for m in ctx.resolve(["*.txt"])] == [visible]
    assert ctx.ignore.matches(ignored)
    assert not (tmp_path / "ws").exists()  # a directory context is used in place


def test_ignored_dockerfile_is_still_readable(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "Dockerfile\n.dockerignore")
    assert ctx.read_dockerfile() == b"FROM scratch"
    assert [m.rel_path for m in ctx.resolve(["*"])] == [
        "app.py",
        "docs",
        "lib",
        "notes.txt",
        "secret.key",
    ]


# ---------------------------------------------------------------- symlinks


@pytest.fixture
def host_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "host" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0")
    return secret


ESCAPES = [
    "abs",  # -> /abs host path
    "up",  # -> ../host
    "updir/passwd",  # through a symlinked dir that climbs out
    "absdir/passwd",
    "nested/deep/passwd",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_symlinks_cannot_escape_the_root(tmp_path: Path, host_secret: Path, source: str) -> None:
    ctx = _context(
        tmp_path,
        files={
            "abs": f"->{host_secret}",
            "up": "->../host/passwd",
            "updir": "->../../../../host",
            "absdir": f"->{host_secret.parent}",
            "nested/deep": "->../../../../../../host",
        },
    )
    try:
        matches = ctx.resolve([source])
    except ContextError as exc:
        assert "no source files were specified" in str(exc)
        return
    for match in matches:  # resolved inside the root, never the host file
        assert match.host_path.is_relative_to(ctx.root)
        assert match.host_path != host_secret


def test_symlink_resolved_inside_root(tmp_path: Path) -> None:
    ctx = _context(
        tmp_path,
        files={"etc/passwd": "ctx-passwd", "abs": "->/etc/passwd", "up": "->../../../etc/passwd"},
    )
    for source in ("abs", "up"):
        [match] = ctx.resolve([source])
        assert match.host_path == ctx.root / "etc" / "passwd"
        assert match.dest == source
        assert match.host_path.read_text() == "ctx-passwd"


def test_symlinks_below_a_directory_are_copied_as_links(tmp_path: Path, host_secret: Path) -> None:
    ctx = _context(tmp_path, files={"lib/evil": f"->{host_secret}", "lib/loop": "->loop"})
    files = {f.rel_path: f for m in ctx.resolve(["lib"]) for f in ctx.walk(m)}
    assert files["lib/evil"].kind is FileKind.SYMLINK
    assert os.readlink(files["lib/evil"].host_path) == str(host_secret)
    assert files["lib/loop"].kind is FileKind.SYMLINK


def test_symlink_loop_is_an_error(tmp_path: Path) -> None:
    ctx = _context(tmp_path, files={"a": "->b", "b": "->a"})
    with pytest.raises(ContextError, match="too many symlinks"):
        ctx.resolve(["a"])


def test_symlink_to_ignored_target_is_invisible(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "secret.key", files={"link": "->secret.key"})
    with pytest.raises(ContextError, match="'link'"):
        ctx.resolve(["link"])


def test_special_files_are_skipped_by_wildcards_and_refused_by_name(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    os.mkfifo(ctx.root / "fifo")
    assert "fifo" not in [m.rel_path for m in ctx.resolve(["*"])]
    assert "fifo" not in [f.rel_path for m in ctx.resolve(["."]) for f in ctx.walk(m)]
    with pytest.raises(ContextError, match="'fifo'.*not a regular file"):
        ctx.resolve(["fifo"])


def test_plain_path_to_a_tarball_is_a_tar_context(tmp_path: Path) -> None:
    import tarfile

    archive = tmp_path / "ctx.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        tar.addfile(info)
    ctx = open_context(archive, workspace=tmp_path / "ws")
    assert ctx.root == (tmp_path / "ws" / "context").resolve()
    assert ctx.read_dockerfile() == b""


def test_without_ignore_nothing_is_hidden(tmp_path: Path) -> None:
    root = _make(tmp_path / "ctx", {**TREE, ".dockerignore": "*.key"})
    filtered = BuildContext(root)
    unfiltered = BuildContext(root, dockerfile="/dev/null", ignore=False)
    assert "secret.key" not in [m.rel_path for m in filtered.resolve(["*"])]
    assert "secret.key" in [m.rel_path for m in unfiltered.resolve(["*"])]
    assert unfiltered.ignore_file is None
