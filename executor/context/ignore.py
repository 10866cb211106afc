"""``.dockerignore`` patterns with the semantics of moby/patternmatcher.

Reading follows ``patternmatcher/ignorefile.ReadAll``: a UTF-8 BOM is dropped,
lines *starting* with ``#`` are comments, whitespace is trimmed, blank lines are
skipped, ``!`` marks an exception, each pattern is cleaned like Go's
``filepath.Clean`` and a leading ``/`` is removed.

Matching follows ``PatternMatcher.MatchesOrParentMatches``: patterns are tried in
order and the last one that applies wins; a pattern matches a path if it matches
the path itself or any of its parent directories (so ``docs`` hides everything
below ``docs``). Each pattern is classified like moby does (exact, prefix
``foo/**``, suffix ``**/foo``, or a regular expression) so that the quirks of the
fast paths are kept (``**foo`` is a plain suffix test and matches ``barfoo``).

Deliberate differences, each for a pattern moby itself handles by accident:
``\\x`` always means a literal ``x`` (moby feeds ``\\d`` to Go's regexp, where it
means "a digit"), and ``*``/``?`` inside ``[...]`` are literal characters.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from executor.context.errors import ContextError

_BOM = "\ufeff"


def go_clean(path: str) -> str:
    """Return ``path`` cleaned like Go's ``path.Clean`` (``""`` becomes ``"."``)."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        # POSIX keeps a leading "//"; Go collapses it.
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def contains_wildcards(text: str) -> bool:
    """Tell whether ``text`` has an unescaped ``*``, ``?`` or ``[`` (BuildKit's rule)."""
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char in "*?[":
            return True
        index += 1
    return False


def _translate_class(pattern: str, start: int) -> tuple[str, int]:
    """Translate the ``[...]`` class opening at ``start``; return regex and next index.

    Follows the class grammar of Go's ``filepath.Match``: ``^`` negates, ``a-z``
    ranges, ``\\`` escapes; an empty or unterminated class, a ``-`` with no low end
    or a reversed range is a bad pattern.
    """
    index = start + 1
    out = ["["]
    if index < len(pattern) and pattern[index] == "^":
        out.append("^")
        index += 1
    items = 0
    while True:
        if index >= len(pattern):
            raise ContextError(f"bad pattern {pattern!r}: unterminated character class")
        if pattern[index] == "]" and items > 0:
            out.append("]")
            return "".join(out), index + 1
        low, index = _class_char(pattern, index)
        if index < len(pattern) and pattern[index] == "-":
            high, index = _class_char(pattern, index + 1)
            if high < low:
                raise ContextError(f"bad pattern {pattern!r}: range {low}-{high} is reversed")
            out.append(f"{re.escape(low)}-{re.escape(high)}")
        else:
            out.append(re.escape(low))
        items += 1


def _class_char(pattern: str, index: int) -> tuple[str, int]:
    if index >= len(pattern):
        raise ContextError(f"bad pattern {pattern!r}: unterminated character class")
    char = pattern[index]
    if char in "-]":
        raise ContextError(f"bad pattern {pattern!r}: unexpected {char!r} in character class")
    if char == "\\":
        if index + 1 >= len(pattern):
            raise ContextError(f"bad pattern {pattern!r}: trailing backslash")
        return pattern[index + 1], index + 2
    return char, index + 1


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Go ``filepath.Match`` pattern (``*`` and ``?`` stop at ``/``)."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            regex, index = _translate_class(pattern, index)
            out.append(regex)
            continue
        elif char == "\\":
            if index + 1 >= len(pattern):
                raise ContextError(f"bad pattern {pattern!r}: trailing backslash")
            out.append(re.escape(pattern[index + 1]))
            index += 1
        else:
            out.append(re.escape(char))
        index += 1
    # \Z, not $: "$" would also match before a trailing newline.
    return re.compile("".join(out) + r"\Z", re.DOTALL)


class _Kind(Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    REGEXP = "regexp"


def _compile(pattern: str) -> tuple[_Kind, re.Pattern[str] | None]:
    """Classify and compile one cleaned pattern the way ``Pattern.compile`` does."""
    kind = _Kind.EXACT
    out = ["^"]
    index = 0
    length = len(pattern)
    while index < length:
        char = pattern[index]
        first = index == 0
        index += 1
        if char == "*":
            if index < length and pattern[index] == "*":
                index += 1
                if index < length and pattern[index] == "/":
                    index += 1
                if index >= length:
                    # "**" at the end matches everything below, as in .gitignore.
                    if kind is _Kind.EXACT:
                        kind = _Kind.PREFIX
                    else:
                        out.append(".*")
                        kind = _Kind.REGEXP
                else:
                    out.append("(?:.*/)?")
                    kind = _Kind.REGEXP
                if first:
                    kind = _Kind.SUFFIX
            else:
                out.append("[^/]*")
                kind = _Kind.REGEXP
        elif char == "?":
            out.append("[^/]")
            kind = _Kind.REGEXP
        elif char == "\\":
            if index < length:
                out.append(re.escape(pattern[index]))
                index += 1
                kind = _Kind.REGEXP
            else:
                out.append(re.escape("\\"))
        elif char == "[":
            regex, index = _translate_class(pattern, index - 1)
            out.append(regex)
            kind = _Kind.REGEXP
        else:
            out.append(re.escape(char))
    if kind is _Kind.REGEXP:
        # Go's regexp "." does not match a newline; neither does Python's without DOTALL.
        return kind, re.compile("".join(out) + r"\Z")
    return kind, None


@dataclass(frozen=True)
class Pattern:
    """One cleaned ignore pattern; ``exclusion`` is true for a ``!`` exception."""

    text: str
    exclusion: bool = False
    _kind: _Kind = field(init=False, repr=False, compare=False)
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.text:
            raise ContextError('illegal exclusion pattern: "!"')
        glob_regex(self.text)  # syntax check, as moby does with filepath.Match(p, ".")
        kind, regex = _compile(self.text)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_regex", regex)

    @classmethod
    def parse(cls, line: str) -> Pattern | None:
        """Parse one pattern line (no comment handling); ``None`` for a blank line."""
        text = line.strip()
        if not text:
            return None
        exclusion = text.startswith("!")
        if exclusion:
            text = text[1:].strip()
        if text:
            text = go_clean(text)
            if len(text) > 1 and text.startswith("/"):
                text = text[1:]
        return cls(text, exclusion)

    def __str__(self) -> str:
        return ("!" if self.exclusion else "") + self.text

    def match(self, path: str) -> bool:
        """Tell whether this pattern matches ``path`` itself (no parent matching)."""
        if self._kind is _Kind.EXACT:
            return path == self.text
        if self._kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if self._kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self._regex is not None
        return self._regex.match(path) is not None


def parse_patterns(lines: Iterable[str]) -> tuple[Pattern, ...]:
    """Parse patterns given one per item (``--exclude`` values): no comments."""
    parsed = (Pattern.parse(line) for line in lines)
    return tuple(pattern for pattern in parsed if pattern is not None)


def parse_dockerignore(text: str) -> tuple[Pattern, ...]:
    """Parse the text of a ``.dockerignore`` file into patterns, in file order."""
    text = text.removeprefix(_BOM)
    lines = (line for line in text.splitlines() if not line.startswith("#"))
    return parse_patterns(lines)


# Directories whose per-pattern results an IgnoreMatcher remembers: a walk meets a
# directory's entries one after another, so a small memo serves nearly every lookup.
_PARENT_MEMO_SIZE = 1024


class IgnoreMatcher:
    """Decides which context paths an ordered list of patterns hides."""

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        self.patterns = tuple(patterns)
        # Whether any ``!`` pattern exists, so an ignored directory must still be walked.
        self.has_exceptions = any(pattern.exclusion for pattern in self.patterns)
        self._parent_hits: dict[str, tuple[bool, ...]] = {}

    def matches(self, path: str) -> bool:
        """Tell whether the relative POSIX ``path`` is ignored (last match wins)."""
        if not self.patterns:
            return False  # most contexts: no .dockerignore, no --exclude
        path = go_clean(path)
        if path in (".", "/"):
            return False  # moby: "don't let them exclude everything"
        above = self._hits_above(posixpath.dirname(path))
        matched = False
        for pattern, parent_hit in zip(self.patterns, above, strict=True):
            # An inclusion cannot change an ignored path, nor an exception a kept one.
            if pattern.exclusion != matched:
                continue
            if parent_hit or pattern.match(path):
                matched = not pattern.exclusion
        return matched

    def _hits_above(self, parent: str) -> tuple[bool, ...]:
        """For each pattern, whether it matches ``parent`` or a directory above it."""
        hits = self._parent_hits.get(parent)
        if hits is None:
            parents = parent.split("/") if parent else []
            prefixes = ["/".join(parents[: i + 1]) for i in range(len(parents))]
            hits = tuple(any(p.match(prefix) for prefix in prefixes) for p in self.patterns)
            if len(self._parent_hits) >= _PARENT_MEMO_SIZE:
                self._parent_hits.clear()
            self._parent_hits[parent] = hits
        return hits
