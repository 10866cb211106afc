"""parse_dockerfile: every instruction and form, one table row each."""

from __future__ import annotations

import pytest

from executor.dockerfile import (
    Arg,
    ArgDeclaration,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Instruction,
    KeyValue,
    Label,
    Location,
    Maintainer,
    Mount,
    OnBuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
    parse_dockerfile,
)


def only_instruction(line: str) -> Instruction:
    """Parse ``FROM scratch`` plus ``line`` and return the one instruction of line 2."""
    dockerfile = parse_dockerfile(f"FROM scratch\n{line}\n")
    (instruction,) = dockerfile.stages[0].instructions
    assert instruction.location == Location("Dockerfile", 2)
    return instruction


def loc() -> Location:
    return Location("Dockerfile", 2)


CASES: list[tuple[str, Instruction]] = [
    (
        "RUN echo  hi && true",
        Run("echo  hi && true", True, (), None, (), loc(), "RUN echo  hi && true"),
    ),
    (
        'RUN ["echo", "hi"]',
        Run(("echo", "hi"), False, (), None, (), loc(), 'RUN ["echo", "hi"]'),
    ),
    # Not valid JSON: Docker falls back to the shell form.
    ("RUN [echo, hi]", Run("[echo, hi]", True, (), None, (), loc(), "RUN [echo, hi]")),
    (
        "RUN --network=none --mount=type=cache,target=/root/.cache,sharing=locked make",
        Run(
            "make",
            True,
            (Mount("cache", (("target", "/root/.cache"), ("sharing", "locked"))),),
            "none",
            (),
            loc(),
            "RUN --network=none --mount=type=cache,target=/root/.cache,sharing=locked make",
        ),
    ),
    (
        "RUN --mount=type=secret,id=tok,required --mount=type=tmpfs,dst=/t --mount=target=/s,ro x",
        Run(
            "x",
            True,
            (
                Mount("secret", (("id", "tok"), ("required", "true"))),
                Mount("tmpfs", (("dst", "/t"),)),
                Mount("bind", (("target", "/s"), ("ro", "true"))),
            ),
            None,
            (),
            loc(),
            "RUN --mount=type=secret,id=tok,required --mount=type=tmpfs,dst=/t "
            "--mount=target=/s,ro x",
        ),
    ),
    ("CMD echo hi", Cmd("echo hi", True, loc(), "CMD echo hi")),
    ('CMD ["a", "b c"]', Cmd(("a", "b c"), False, loc(), 'CMD ["a", "b c"]')),
    ('ENTRYPOINT ["/init"]', Entrypoint(("/init",), False, loc(), 'ENTRYPOINT ["/init"]')),
    ("ENTRYPOINT exec app", Entrypoint("exec app", True, loc(), "ENTRYPOINT exec app")),
    (
        'ENV a=b c="d e"',
        Env((KeyValue("a", "b"), KeyValue("c", '"d e"')), loc(), 'ENV a=b c="d e"'),
    ),
    ("ENV PATH /a  b", Env((KeyValue("PATH", "/a  b"),), loc(), "ENV PATH /a  b")),
    (
        "ARG A B=2",
        Arg((ArgDeclaration("A", None), ArgDeclaration("B", "2")), loc(), "ARG A B=2"),
    ),
    (
        'LABEL org.x="a b" y=z',
        Label((KeyValue("org.x", '"a b"'), KeyValue("y", "z")), loc(), 'LABEL org.x="a b" y=z'),
    ),
    ("EXPOSE 80 53/udp", Expose(("80", "53/udp"), loc(), "EXPOSE 80 53/udp")),
    ('VOLUME ["/a", "/b"]', Volume(("/a", "/b"), loc(), 'VOLUME ["/a", "/b"]')),
    ("VOLUME /a /b", Volume(("/a", "/b"), loc(), "VOLUME /a /b")),
    ("USER app:app", User("app:app", loc(), "USER app:app")),
    ("WORKDIR /srv/$APP", Workdir("/srv/$APP", loc(), "WORKDIR /srv/$APP")),
    ("STOPSIGNAL SIGTERM", StopSignal("SIGTERM", loc(), "STOPSIGNAL SIGTERM")),
    ("MAINTAINER Jo <jo@x>", Maintainer("Jo <jo@x>", loc(), "MAINTAINER Jo <jo@x>")),
    (
        'SHELL ["/bin/bash", "-ec"]',
        Shell(("/bin/bash", "-ec"), loc(), 'SHELL ["/bin/bash", "-ec"]'),
    ),
    (
        "COPY --from=build --chown=1:2 --chmod=0644 --link --parents --exclude=*.md "
        "--exclude=.git a b /dst/",
        Copy(
            sources=("a", "b"),
            dest="/dst/",
            from_="build",
            chown="1:2",
            chmod="0644",
            link=True,
            parents=True,
            excludes=("*.md", ".git"),
            checksum=None,
            add=False,
            heredocs=(),
            location=loc(),
            original="COPY --from=build --chown=1:2 --chmod=0644 --link --parents "
            "--exclude=*.md --exclude=.git a b /dst/",
        ),
    ),
    (
        'COPY ["a b", "/c"]',
        Copy(
            ("a b",),
            "/c",
            None,
            None,
            None,
            False,
            False,
            (),
            None,
            False,
            (),
            loc(),
            'COPY ["a b", "/c"]',
        ),
    ),
    (
        "ADD --checksum=sha256:abc --link=false https://x/y.tgz /y",
        Copy(
            ("https://x/y.tgz",),
            "/y",
            None,
            None,
            None,
            False,
            False,
            (),
            "sha256:abc",
            True,
            (),
            loc(),
            "ADD --checksum=sha256:abc --link=false https://x/y.tgz /y",
        ),
    ),
    (
        "HEALTHCHECK NONE",
        Healthcheck(None, False, None, None, None, None, None, loc(), "HEALTHCHECK NONE"),
    ),
    (
        "HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s --start-interval=1.5s "
        "--retries=3 CMD curl -f http://localhost/",
        Healthcheck(
            "curl -f http://localhost/",
            True,
            90.0,
            0.5,
            2.0,
            1.5,
            3,
            loc(),
            "HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s "
            "--start-interval=1.5s --retries=3 CMD curl -f http://localhost/",
        ),
    ),
    (
        'HEALTHCHECK CMD ["true"]',
        Healthcheck(
            ("true",), False, None, None, None, None, None, loc(), 'HEALTHCHECK CMD ["true"]'
        ),
    ),
    (
        "ONBUILD COPY . /app",
        OnBuild(
            Copy(
                (".",),
                "/app",
                None,
                None,
                None,
                False,
                False,
                (),
                None,
                False,
                (),
                loc(),
                "COPY . /app",
            ),
            loc(),
            "ONBUILD COPY . /app",
        ),
    ),
    ("run lower-case", Run("lower-case", True, (), None, (), loc(), "RUN lower-case")),
]


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[case[0][:40] for case in CASES])
def test_instruction(line: str, expected: Instruction) -> None:
    assert only_instruction(line) == expected


FROM_CASES = [
    ("FROM scratch", From("scratch", None, None, Location("Dockerfile", 1), "FROM scratch")),
    (
        "FROM --platform=linux/arm64 alpine:3 AS Build",
        From(
            "alpine:3",
            "build",
            "linux/arm64",
            Location("Dockerfile", 1),
            "FROM --platform=linux/arm64 alpine:3 AS Build",
        ),
    ),
    (
        "FROM ${REG}/img as base",
        From("${REG}/img", "base", None, Location("Dockerfile", 1), "FROM ${REG}/img as base"),
    ),
]


@pytest.mark.parametrize(("line", "expected"), FROM_CASES)
def test_from(line: str, expected: From) -> None:
    (stage,) = parse_dockerfile(line + "\n").stages
    assert stage.from_ == expected
    assert (stage.name, stage.base, stage.platform) == (
        expected.name,
        expected.image,
        expected.platform,
    )


def test_stages_meta_args_and_continuations() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=alpine\n"
        "FROM $BASE AS one\n"
        "RUN a \\\n"
        "# a comment inside a continuation is dropped\n"
        "    b\n"
        "FROM one\n"
        "COPY --from=one /x /y\n"
    )
    dockerfile = parse_dockerfile(text, filename="build/Dockerfile.app")
    assert dockerfile.directives == (("syntax", "docker/dockerfile:1"),)
    assert [arg.declarations for arg in dockerfile.meta_args] == [
        (ArgDeclaration("BASE", "alpine"),)
    ]
    first, second = dockerfile.stages
    assert (first.index, first.name, first.base) == (0, "one", "$BASE")
    (run,) = first.instructions
    assert isinstance(run, Run)
    assert run.command == "a     b"
    assert run.location == Location("build/Dockerfile.app", 4)
    assert (second.index, second.name, second.base) == (1, None, "one")
    (copy,) = second.instructions
    assert copy.location == Location("build/Dockerfile.app", 8)
