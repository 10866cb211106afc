"""Parser directives (``# escape=`` and ``# syntax=``) at the top of a Dockerfile."""

from __future__ import annotations

import re
from dataclasses import dataclass

from executor.dockerfile.errors import DockerfileError
from executor.dockerfile.expansion import DEFAULT_ESCAPE

# Docker's directive grammar; the first line that is not one ends the directives.
_DIRECTIVE = re.compile(r"#\s*([A-Za-z][A-Za-z0-9]*)\s*=\s*(.+?)\s*")
KNOWN_DIRECTIVES = frozenset({"escape", "syntax", "check"})


@dataclass(frozen=True)
class Directives:
    """The directives in order (lower-case keys), the escape character, lines used."""

    pairs: tuple[tuple[str, str], ...]
    escape: str
    line_count: int


def parse_directives(text: str, *, filename: str) -> Directives:
    """Read the directives at the top of ``text``."""
    found: dict[str, str] = {}
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        match = _DIRECTIVE.fullmatch(line.strip())
        if not match or match.group(1).lower() not in KNOWN_DIRECTIVES:
            break
        key, value = match.group(1).lower(), match.group(2)
        if key in found:
            raise DockerfileError(filename, number, f"only one {key} parser directive can be used")
        if key == "escape" and value not in ("\\", "`"):
            raise DockerfileError(filename, number, f"invalid escape token {value!r}: use \\ or `")
        found[key] = value
        count = number
    return Directives(tuple(found.items()), found.get("escape", DEFAULT_ESCAPE), count)


def normalize_directives(text: str, directives: Directives) -> str:
    """``text`` with its directive lines replaced by one ``# escape=`` line and blanks.

    dockerfile-parse stops looking for ``escape`` at any other directive (``check``),
    so it is given only the one it needs; line numbers stay the same.
    """
    lines = text.splitlines(keepends=True)
    if directives.line_count == 0:
        return text
    head = [f"# escape={directives.escape}\n"] + ["\n"] * (directives.line_count - 1)
    return "".join(head + lines[directives.line_count :])
