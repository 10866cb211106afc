"""expand and split_words: Docker's shell-word rules."""

from __future__ import annotations

import pytest

from executor.dockerfile import (
    EXPANDING_INSTRUCTIONS,
    DockerfileError,
    Location,
    expand,
    split_words,
)

WHERE = Location("Dockerfile", 7)
ENV = {"A": "a", "B": "b", "EMPTY": "", "SP": "x y"}

CASES = [
    ("$A", "a"),
    ("${A}", "a"),
    ("pre${A}post", "preapost"),
    ("$A$B", "ab"),
    ("$A.$B", "a.b"),
    ("$UNSET", ""),
    ("${UNSET}", ""),
    ("x${UNSET}y", "xy"),
    ("${UNSET:-dflt}", "dflt"),
    ("${EMPTY:-dflt}", "dflt"),
    ("${EMPTY-dflt}", ""),
    ("${UNSET-dflt}", "dflt"),
    ("${A:-dflt}", "a"),
    ("${A:+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${UNSET+alt}", ""),
    ("${UNSET:-${B}}", "b"),
    ("${UNSET:-${ALSO:-deep}}", "deep"),
    ("${A:+${B}x}", "bx"),
    ("\\$A", "$A"),
    ("\\${A}", "${A}"),
    ("'$A'", "$A"),
    ('"$A"', "a"),
    ('"$SP"', "x y"),
    ('"\\$A"', "$A"),
    ('"a\\nb"', "a\\nb"),
    ("'a\\nb'", "a\\nb"),
    ("a\"b\"'c'", "abc"),
    ("$", "$"),
    ("$-", "$-"),
    ("cost: 5$", "cost: 5$"),
    ("${A:?must be set}", "a"),
]


@pytest.mark.parametrize(("word", "expected"), CASES)
def test_expand(word: str, expected: str) -> None:
    assert expand(word, ENV, location=WHERE) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [("`$A", "$A"), ("C:\\dir\\$A", "C:\\dir\\a"), ("``", "`")],
)
def test_expand_with_backtick_escape(word: str, expected: str) -> None:
    assert expand(word, ENV, location=WHERE, escape="`") == expected


ERRORS = [
    ("${UNSET:?needs UNSET}", "Dockerfile:7: UNSET: needs UNSET"),
    ("${EMPTY:?empty}", "Dockerfile:7: EMPTY: empty"),
    ("${UNSET?gone}", "Dockerfile:7: UNSET: gone"),
    ("${UNSET:?}", "Dockerfile:7: UNSET: is not allowed to be unset"),
    ("${A", "Dockerfile:7: missing '}' in '${A'"),
    ("${A:-x", "Dockerfile:7: missing '}' in '${A:-x'"),
    ("${A:", "Dockerfile:7: missing '}' in '${A:'"),
    ("${}", "Dockerfile:7: bad substitution in '${}': missing variable name"),
    ("${A#x}", "Dockerfile:7: unsupported modifier '#' in ${A...}"),
    ("'open", 'Dockerfile:7: unterminated single quote in "\'open"'),
    ('"open', "Dockerfile:7: unterminated double quote in '\"open'"),
]


@pytest.mark.parametrize(("word", "message"), ERRORS)
def test_expand_errors(word: str, message: str) -> None:
    with pytest.raises(DockerfileError) as caught:
        expand(word, ENV, location=WHERE)
    assert str(caught.value) == message
    assert caught.value.line == 7
    assert not caught.value.temporary


def test_empty_but_set_passes_question_without_colon() -> None:
    assert expand("${EMPTY?unset}", ENV, location=WHERE) == ""


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a b  c", ["a", "b", "c"]),
        ('a="b c" d', ['a="b c"', "d"]),
        ("a='b c' d", ["a='b c'", "d"]),
        ("a\\ b c", ["a\\ b", "c"]),
        ("  ", []),
    ],
)
def test_split_words_keeps_quotes(text: str, words: list[str]) -> None:
    assert split_words(text) == words


def test_which_instructions_expand() -> None:
    assert {"RUN", "CMD", "ENTRYPOINT", "ONBUILD", "SHELL"} & EXPANDING_INSTRUCTIONS == set()
    assert {"FROM", "COPY", "ADD", "ENV", "WORKDIR", "USER"} <= EXPANDING_INSTRUCTIONS
