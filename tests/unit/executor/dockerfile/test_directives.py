"""Parser directives: escape (and the continuation character it sets) and syntax."""

from __future__ import annotations

from executor.dockerfile import Copy, Location, Run, Workdir, expand, parse_dockerfile


def test_backtick_escape_continues_lines_and_keeps_windows_paths() -> None:
    text = (
        "# escape=`\n"
        "FROM mcr.microsoft.com/windows/servercore\n"
        "WORKDIR C:\\app\\bin\n"
        "COPY C:\\src\\a.txt `\n"
        "     C:\\dst\\\n"
        "RUN dir C:\\ \\\n"
    )
    dockerfile = parse_dockerfile(text)
    assert dockerfile.escape == "`"
    assert dockerfile.directives == (("escape", "`"),)
    workdir, copy, run = dockerfile.stages[0].instructions
    assert isinstance(workdir, Workdir)
    assert expand(workdir.path, {}, location=workdir.location, escape="`") == "C:\\app\\bin"
    assert isinstance(copy, Copy)
    assert copy.sources == ("C:\\src\\a.txt",)
    assert copy.dest == "C:\\dst\\"
    assert copy.location == Location("Dockerfile", 4)
    # A backslash no longer continues a line.
    assert isinstance(run, Run)
    assert run.command == "dir C:\\ \\"
    assert run.location == Location("Dockerfile", 6)


def test_default_escape_is_backslash() -> None:
    dockerfile = parse_dockerfile("FROM scratch\nRUN a \\\n b\n")
    assert dockerfile.escape == "\\"
    (run,) = dockerfile.stages[0].instructions
    assert isinstance(run, Run)
    assert run.command == "a  b"


def test_escape_directive_after_an_instruction_is_a_comment() -> None:
    dockerfile = parse_dockerfile("FROM scratch\n# escape=`\nRUN a `\n")
    assert dockerfile.escape == "\\"
    (run,) = dockerfile.stages[0].instructions
    assert isinstance(run, Run)
    assert run.command == "a `"


def test_backtick_escape_in_heredoc_continued_line() -> None:
    text = "# escape=`\nFROM scratch\nRUN --network=none `\n  sh <<EOF\nls\nEOF\nUSER u\n"
    run, user = parse_dockerfile(text).stages[0].instructions
    assert isinstance(run, Run)
    assert run.heredocs[0].body == "ls\n"
    assert user.location == Location("Dockerfile", 7)


def test_escape_after_check_and_syntax_directives() -> None:
    text = "# syntax=docker/dockerfile:1\n# check=skip=all\n#Escape = `\nFROM a\nRUN a `\n b\n"
    dockerfile = parse_dockerfile(text)
    assert dockerfile.directives == (
        ("syntax", "docker/dockerfile:1"),
        ("check", "skip=all"),
        ("escape", "`"),
    )
    (run,) = dockerfile.stages[0].instructions
    assert isinstance(run, Run)
    assert (run.command, run.location.line) == ("a  b", 5)


def test_directive_after_a_comment_or_blank_line_is_a_comment() -> None:
    for text in ("# hi\n# escape=`\nFROM a\n", "\n# escape=`\nFROM a\n"):
        dockerfile = parse_dockerfile(text)
        assert (dockerfile.directives, dockerfile.escape) == ((), "\\")
