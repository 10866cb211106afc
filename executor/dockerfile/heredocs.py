"""Here-documents (``RUN <<EOF``, ``COPY <<EOF /dest``), which dockerfile-parse lacks.

dockerfile-parse reads every body line as an instruction, so the text is scanned
first: each heredoc body is taken out (its lines left blank, so line numbers stay
true) and kept by the line of the instruction that opened it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from executor.dockerfile.errors import DockerfileError
from executor.dockerfile.expansion import split_words
from executor.dockerfile.instructions import Heredoc

# The instructions BuildKit allows heredocs in.
HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})

# One word such as <<EOF, <<-EOF, <<"EOF", <<-'EOF' or 3<<EOF (BuildKit's reHeredoc).
_MARKER = re.compile(r"(?:\d*)<<(-?)(?:(['\"])([^'\"<]+)\2|([^'\"<\s]+))")


@dataclass(frozen=True)
class HeredocMarker:
    """A ``<<NAME`` found in an instruction's words."""

    name: str
    quoted: bool
    strip_tabs: bool


@dataclass(frozen=True)
class ScannedText:
    """The text with heredoc bodies blanked, and the heredocs by 1-based line."""

    text: str
    heredocs: dict[int, tuple[Heredoc, ...]]


def find_markers(arguments: str, escape: str) -> list[HeredocMarker]:
    """The heredoc markers among ``arguments``' words, in order."""
    markers = []
    for word in split_words(arguments, escape):
        match = _MARKER.fullmatch(word)
        if match:
            dash, _, quoted_name, plain_name = match.groups()
            markers.append(
                HeredocMarker(
                    name=quoted_name or plain_name,
                    quoted=quoted_name is not None,
                    strip_tabs=dash == "-",
                )
            )
    return markers


def is_marker(word: str) -> bool:
    """Whether ``word`` is a heredoc marker such as ``<<EOF``."""
    return _MARKER.fullmatch(word) is not None


def scan_heredocs(text: str, *, escape: str, filename: str) -> ScannedText:
    """Take every heredoc body out of ``text``; see the module docstring."""
    lines = text.splitlines(keepends=True)
    out = list(lines)
    found: dict[int, tuple[Heredoc, ...]] = {}
    index = 0
    while index < len(lines):
        stripped = lines[index].strip()
        if not stripped or stripped.startswith("#"):
            index += 1
            continue
        start = index
        logical = lines[index].rstrip("\r\n")
        # Continuation as dockerfile-parse does it: comments are skipped, an empty
        # line ends the instruction.
        while logical.rstrip().endswith(escape) and index + 1 < len(lines):
            following = lines[index + 1].strip()
            if not following:
                break
            index += 1
            if following.startswith("#"):
                continue
            logical = logical.rstrip()[: -len(escape)] + lines[index].rstrip("\r\n")
        index += 1
        keyword, _, arguments = logical.strip().partition(" ")
        if keyword.upper() not in HEREDOC_INSTRUCTIONS:
            continue
        heredocs = []
        for marker in find_markers(arguments, escape):
            body, index = _read_body(lines, out, index, marker)
            if body is None:
                raise DockerfileError(filename, start + 1, f"unterminated heredoc <<{marker.name}")
            heredocs.append(
                Heredoc(
                    name=marker.name,
                    body=body,
                    expand=not marker.quoted,
                    strip_tabs=marker.strip_tabs,
                )
            )
        if heredocs:
            found[start + 1] = tuple(heredocs)
    return ScannedText(text="".join(out), heredocs=found)


def _read_body(
    lines: list[str], out: list[str], index: int, marker: HeredocMarker
) -> tuple[str | None, int]:
    """Read one body from ``index`` up to its delimiter, blanking its lines in ``out``."""
    body: list[str] = []
    while index < len(lines):
        line = lines[index].rstrip("\r\n")
        out[index] = "\n"
        index += 1
        if marker.strip_tabs:
            line = line.lstrip("\t")
        if line == marker.name:
            return "".join(body), index
        body.append(line + "\n")
    return None, index
