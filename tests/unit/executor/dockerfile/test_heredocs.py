"""Heredocs in RUN, COPY and ADD, which dockerfile-parse does not understand."""

from __future__ import annotations

from executor.dockerfile import Copy, Heredoc, Location, Run, expand, parse_dockerfile


def stage_instructions(text: str) -> tuple[object, ...]:
    return parse_dockerfile(text).stages[0].instructions


def test_run_with_one_heredoc_and_line_numbers_after_it() -> None:
    run, after = stage_instructions("FROM scratch\nRUN <<EOF\nset -e\necho $HOME\nEOF\nUSER app\n")
    assert run == Run(
        command="<<EOF",
        shell_form=True,
        mounts=(),
        network=None,
        heredocs=(Heredoc("EOF", "set -e\necho $HOME\n", expand=True, strip_tabs=False),),
        location=Location("Dockerfile", 2),
        original="RUN <<EOF",
    )
    # The body lines are not instructions, and the line count stays true.
    assert after.location == Location("Dockerfile", 6)  # type: ignore[attr-defined]


def test_several_heredocs_in_one_run() -> None:
    (run,) = stage_instructions(
        "FROM scratch\nRUN python3 <<PY && sh <<'SH'\nprint(1)\nPY\necho $X\nSH\n"
    )
    assert isinstance(run, Run)
    assert run.command == "python3 <<PY && sh <<'SH'"
    assert run.heredocs == (
        Heredoc("PY", "print(1)\n", expand=True, strip_tabs=False),
        Heredoc("SH", "echo $X\n", expand=False, strip_tabs=False),
    )


def test_dash_strips_leading_tabs_from_body_and_delimiter() -> None:
    (run,) = stage_instructions("FROM scratch\nRUN <<-EOF\n\t\techo a\n\t  b\n\tEOF\n")
    assert isinstance(run, Run)
    assert run.heredocs == (Heredoc("EOF", "echo a\n  b\n", expand=True, strip_tabs=True),)


def test_without_dash_tabs_stay() -> None:
    (run,) = stage_instructions("FROM scratch\nRUN <<EOF\n\techo a\nEOF\n")
    assert isinstance(run, Run)
    assert run.heredocs[0].body == "\techo a\n"


def test_copy_heredoc_to_destination() -> None:
    (copy,) = stage_instructions('FROM scratch\nCOPY <<"EOF" /etc/motd\nhello $USER\nEOF\n')
    assert isinstance(copy, Copy)
    assert copy.sources == ('<<"EOF"',)
    assert copy.dest == "/etc/motd"
    assert copy.heredocs == (Heredoc("EOF", "hello $USER\n", expand=False, strip_tabs=False),)


def test_add_heredocs_with_other_sources_and_chmod() -> None:
    (add,) = stage_instructions(
        "FROM scratch\nADD --chmod=0755 <<one <<two ./three /bin/\nA\none\nB\ntwo\n"
    )
    assert isinstance(add, Copy)
    assert add.add
    assert add.chmod == "0755"
    assert add.sources == ("<<one", "<<two", "./three")
    assert [doc.body for doc in add.heredocs] == ["A\n", "B\n"]


def test_quoted_delimiter_suppresses_expansion_in_the_body() -> None:
    text = "FROM scratch\nCOPY <<'Q' <<U /d/\nhi $NAME\nQ\nhi $NAME\nU\n"
    (copy,) = stage_instructions(text)
    assert isinstance(copy, Copy)
    env = {"NAME": "jo"}
    where = Location("Dockerfile", 2)
    bodies = [
        expand(doc.body, env, location=where, raw=True) if doc.expand else doc.body
        for doc in copy.heredocs
    ]
    assert bodies == ["hi $NAME\n", "hi jo\n"]


def test_heredoc_body_expansion_keeps_quotes_and_escapes() -> None:
    body = "echo \"$A\" '$A' \\$A\n"
    expanded = expand(body, {"A": "x"}, location=Location("Dockerfile", 1), raw=True)
    assert expanded == "echo \"x\" 'x' \\$A\n"


def test_here_string_is_not_a_heredoc() -> None:
    run, user = stage_instructions("FROM scratch\nRUN cat <<<word\nUSER x\n")
    assert isinstance(run, Run)
    assert run.heredocs == ()
    assert user.location == Location("Dockerfile", 3)  # type: ignore[attr-defined]


def test_heredoc_in_a_continued_line() -> None:
    (run,) = stage_instructions("FROM scratch\nRUN --network=none \\\n  sh <<EOF\nls\nEOF\n")
    assert isinstance(run, Run)
    assert run.network == "none"
    assert run.heredocs == (Heredoc("EOF", "ls\n", expand=True, strip_tabs=False),)
