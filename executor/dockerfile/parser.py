"""``parse_dockerfile``: text in, a :class:`Dockerfile` of typed instructions out.

dockerfile-parse splits the text into instructions (continuations, comments and
the escape directive); heredocs are taken out first (:mod:`.heredocs`) because it
does not understand them. Nothing is expanded here; see :mod:`.expansion`.
"""

from __future__ import annotations

import io

from dockerfile_parse import DockerfileParser

from executor.dockerfile.directives import normalize_directives, parse_directives
from executor.dockerfile.errors import DockerfileError
from executor.dockerfile.heredocs import scan_heredocs
from executor.dockerfile.instructions import (
    Arg,
    Dockerfile,
    From,
    Instruction,
    Location,
    Stage,
)
from executor.dockerfile.parsers import PARSERS, Line


def parse_dockerfile(text: str, *, filename: str = "Dockerfile") -> Dockerfile:
    """Parse ``text``; errors are :class:`DockerfileError` naming ``filename:line``."""
    directives = parse_directives(text, filename=filename)
    escape = directives.escape
    scanned = scan_heredocs(
        normalize_directives(text, directives), escape=escape, filename=filename
    )
    lines = _read_lines(scanned.text, escape=escape, filename=filename)
    for number, heredocs in scanned.heredocs.items():
        lines = [
            Line(line.keyword, line.arguments, line.location, escape, heredocs)
            if line.location.line == number
            else line
            for line in lines
        ]
    if not lines:
        raise DockerfileError(filename, 1, "the Dockerfile is empty: it has no instructions")
    meta_args: list[Arg] = []
    stages: list[Stage] = []
    current: From | None = None
    body: list[Instruction] = []
    for line in lines:
        parse = PARSERS.get(line.keyword)
        if parse is None:
            raise line.fail(f"unknown instruction: {line.keyword}")
        parsed = parse(line)
        if isinstance(parsed, From):
            if current is not None:
                stages.append(_stage(len(stages), current, body))
            current, body = parsed, []
        elif current is None:
            if not isinstance(parsed, Arg):
                raise line.fail(
                    f"{line.keyword} before the first FROM: only ARG may come before FROM"
                )
            meta_args.append(parsed)
        else:
            body.append(parsed)
    if current is None:
        raise DockerfileError(filename, lines[-1].location.line, "no FROM instruction")
    stages.append(_stage(len(stages), current, body))
    _check_unique_names(stages, filename)
    return Dockerfile(
        filename=filename,
        directives=directives.pairs,
        escape=escape,
        meta_args=tuple(meta_args),
        stages=tuple(stages),
    )


def _read_lines(text: str, *, escape: str, filename: str) -> list[Line]:
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8")))
    lines = []
    for item in parser.structure:
        keyword = str(item["instruction"]).upper()
        if keyword == "COMMENT":
            continue
        location = Location(filename, int(item["startline"]) + 1)
        lines.append(Line(keyword, str(item["value"]).strip(), location, escape))
    return lines


def _stage(index: int, from_: From, body: list[Instruction]) -> Stage:
    return Stage(
        index=index,
        name=from_.name,
        base=from_.image,
        platform=from_.platform,
        from_=from_,
        instructions=tuple(body),
    )


def _check_unique_names(stages: list[Stage], filename: str) -> None:
    seen: set[str] = set()
    for stage in stages:
        if stage.name is None:
            continue
        if stage.name in seen:
            raise DockerfileError(
                filename, stage.from_.location.line, f"duplicate stage name {stage.name!r}"
            )
        seen.add(stage.name)
