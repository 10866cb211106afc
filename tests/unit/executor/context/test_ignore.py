"""The .dockerignore reader and matcher against moby/patternmatcher behaviour."""

from __future__ import annotations

import pytest

from executor.context import ContextError, IgnoreMatcher, Pattern, parse_dockerignore


def _matcher(text: str) -> IgnoreMatcher:
    return IgnoreMatcher(parse_dockerignore(text))


# (ignore file, path, ignored?) written from the documented behaviour.
MATCH_CASES = [
    # Docker docs: "*/temp*" is one level deep only.
    ("*/temp*", "somedir/temporary.txt", True),
    ("*/temp*", "somedir/temp", True),
    ("*/temp*", "temp", False),
    ("*/temp*", "a/b/temp", False),
    # "*/*/temp*" is exactly two levels deep.
    ("*/*/temp*", "somedir/subdir/temporary.txt", True),
    ("*/*/temp*", "somedir/temporary.txt", False),
    # "temp?" is one character after temp, at the root.
    ("temp?", "tempa", True),
    ("temp?", "temp", False),
    ("temp?", "tempab", False),
    ("temp?", "dir/tempa", False),
    # "**" matches any number of directories, including none.
    ("**/*.go", "main.go", True),
    ("**/*.go", "a/b/c/main.go", True),
    ("**/*.go", "main.goo", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "ab", False),
    ("foo/**", "foo/x/y", True),
    ("foo/**", "foo", False),
    ("**", "anything/at/all", True),
    # moby's suffix fast path: "**foo" is a plain suffix test.
    ("**foo", "barfoo", True),
    ("**/foo", "foo", True),
    ("**/foo", "barfoo", False),
    # Exceptions: last match wins.
    ("*.md\n!README*.md", "README-secret.md", False),
    ("*.md\n!README*.md", "CHANGES.md", True),
    ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
    ("*.md\nREADME-secret.md\n!README*.md", "README-secret.md", False),
    # A directory pattern hides everything below it; an exception can reopen a file.
    ("docs", "docs", True),
    ("docs", "docs/a/b.txt", True),
    ("docs\n!docs/keep.md", "docs/keep.md", False),
    ("docs\n!docs/keep.md", "docs/other.md", True),
    ("docs", "docsy", False),
    # Leading "/" is stripped: root-relative.
    ("/build", "build/out.o", True),
    ("/build", "src/build", False),
    # Comments only when "#" starts the line; whitespace trimmed; blank lines skipped.
    ("# build\n\n   \n", "# build", False),
    ("# build", "build", False),
    ("  build  ", "build", True),
    ("\ufeffbuild", "build", True),
    # Backslash escapes a special character.
    ("\\*.txt", "*.txt", True),
    ("\\*.txt", "a.txt", False),
    ("a\\?b", "a?b", True),
    ("a\\?b", "axb", False),
    # Character classes.
    ("file[0-9]", "file7", True),
    ("file[0-9]", "filex", False),
    ("file[^0-9]", "filex", True),
    ("file[^0-9]", "file7", False),
    # Patterns are cleaned: "." and ".." segments, duplicate and trailing slashes.
    ("./a/../b/", "b", True),
    ("a//b/./c", "a/b/c", True),
    ("!./a", "a", False),
    # Regex metacharacters are literal.
    ("a.b", "axb", False),
    ("a+(b)", "a+(b)", True),
    ("$x{1}", "$x{1}", True),
    # Paths are cleaned too, and the context root is never ignored.
    ("a", "./a/../a/x", True),
    ("*", ".", False),
    ("*", "x", True),
    # A newline is not a path separator but "$" must not stop before one.
    ("a", "a\n", False),
]


@pytest.mark.parametrize(("text", "path", "ignored"), MATCH_CASES)
def test_matches(text: str, path: str, ignored: bool) -> None:
    assert _matcher(text).matches(path) is ignored


PARSE_CASES = [
    ("# comment\n\n/a/b/\n!/c\n  d  \n", ("a/b", "!c", "d")),
    ("!  spaced\n", ("!spaced",)),
    (" # not a comment\n", ("# not a comment",)),
    ("a/../../b\n", ("../b",)),
    ("/\n", ("/",)),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse(text: str, expected: tuple[str, ...]) -> None:
    assert tuple(str(p) for p in parse_dockerignore(text)) == expected


@pytest.mark.parametrize("text", ["!", "[", "a[", "[]", "[z-a]", "a\\"])
def test_bad_patterns_are_refused(text: str) -> None:
    with pytest.raises(ContextError, match="pattern"):
        parse_dockerignore(text)


def test_exceptions_are_reported() -> None:
    assert _matcher("docs\n!docs/keep.md").has_exceptions
    assert not _matcher("docs").has_exceptions


def test_pattern_value() -> None:
    pattern = Pattern.parse("!/a/./b")
    assert pattern == Pattern("a/b", exclusion=True)


def test_one_matcher_answers_each_path_as_a_fresh_one_would() -> None:
    # A matcher remembers what its patterns say about each parent directory; the
    # answers must not depend on the paths asked before, in any order.
    text = "docs\n!docs/keep.md\nbuild/**\n*/tmp\n**/*.pyc\n"
    paths = [
        "docs/drop.md", "docs/keep.md", "src/docs/x", "src/a.py", "src/a.pyc",
        "build/out/x", "src/build/x", "a/tmp", "a/tmp/x", "a/b/tmp", "docs/keep.md/x",
        "src/a.py", "docs", "build", "a/tmp",
    ]  # fmt: skip
    shared = _matcher(text)
    for order in (paths, list(reversed(paths))):
        assert [shared.matches(p) for p in order] == [_matcher(text).matches(p) for p in order]
    assert [shared.matches(p) for p in paths[:4]] == [True, False, False, False]
