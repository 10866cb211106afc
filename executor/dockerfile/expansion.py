"""Docker's shell-word rules: splitting words and expanding ``$VAR`` in them.

Follows the BuildKit shell lexer (``frontend/dockerfile/shell/lex.go``): ``$VAR``,
``${VAR}``, ``${VAR:-word}``, ``${VAR-word}``, ``${VAR:+word}``, ``${VAR+word}``,
``${VAR:?word}`` and ``${VAR?word}``; single quotes suppress expansion, double
quotes allow it, the escape character makes the next character literal. Unset
variables expand to the empty string.
"""

from __future__ import annotations

from collections.abc import Mapping

from executor.dockerfile.errors import DockerfileError
from executor.dockerfile.instructions import Location

# The instructions whose arguments the builder expands (Docker's list); RUN, CMD
# and ENTRYPOINT are left to the shell, ONBUILD to the child build.
EXPANDING_INSTRUCTIONS = frozenset(
    {"ADD", "ARG", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
     "WORKDIR"}
)  # fmt: skip

DEFAULT_ESCAPE = "\\"


def split_words(text: str, escape: str = DEFAULT_ESCAPE) -> list[str]:
    """Split on whitespace outside quotes, keeping quotes and escapes in the words."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if not quote and char.isspace():
            if current:
                words.append("".join(current))
                current = []
        elif char == escape and quote != "'":
            current.append(text[index : index + 2])
            index += 1
        else:
            if not quote and char in "'\"":
                quote = char
            elif char == quote:
                quote = ""
            current.append(char)
        index += 1
    if current:
        words.append("".join(current))
    return words


def expand(
    word: str,
    env: Mapping[str, str],
    *,
    location: Location,
    escape: str = DEFAULT_ESCAPE,
    raw: bool = False,
) -> str:
    """Expand ``word`` with ``env``, removing quotes and escapes.

    ``raw`` keeps quotes and escape characters as they are and expands only the
    ``$`` forms, as BuildKit does for the body of an unquoted heredoc.
    """
    lexer = _Lexer(word, env, location=location, escape=escape, raw=raw)
    result = lexer.until("")
    return result


class _Lexer:
    """One pass over one word; ``until`` stops at a closing character or the end."""

    def __init__(
        self, text: str, env: Mapping[str, str], *, location: Location, escape: str, raw: bool
    ) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.location = location
        self.escape = escape
        self.raw = raw

    def fail(self, problem: str) -> DockerfileError:
        return DockerfileError(self.location.file, self.location.line, problem)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        char = self.peek()
        self.pos += 1
        return char

    def until(self, stop: str) -> str:
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.peek()
            if stop and char == stop:
                return "".join(out)
            self.pos += 1
            if char == self.escape:
                if self.raw:
                    out.append(char + self.next())
                else:
                    out.append(self.next())
            elif char == "'" and not self.raw:
                out.append(self.single_quoted())
            elif char == '"' and not self.raw:
                out.append(self.double_quoted())
            elif char == "$":
                out.append(self.dollar())
            else:
                out.append(char)
        if stop:
            raise self.fail(f"missing '{stop}' in {self.text!r}")
        return "".join(out)

    def single_quoted(self) -> str:
        end = self.text.find("'", self.pos)
        if end < 0:
            raise self.fail(f"unterminated single quote in {self.text!r}")
        value = self.text[self.pos : end]
        self.pos = end + 1
        return value

    def double_quoted(self) -> str:
        out: list[str] = []
        while True:
            char = self.next()
            if not char:
                raise self.fail(f"unterminated double quote in {self.text!r}")
            if char == '"':
                return "".join(out)
            if char == self.escape:
                # Only these can be escaped inside double quotes; other escapes stay.
                if self.peek() in ('"', "$", self.escape) and self.peek():
                    out.append(self.next())
                elif self.peek():
                    out.append(char)
            elif char == "$":
                out.append(self.dollar())
            else:
                out.append(char)

    def name(self) -> str:
        start = self.pos
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.pos += 1
        return self.text[start : self.pos]

    def dollar(self) -> str:
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.pos += 1
        name = self.name()
        if not name:
            raise self.fail(f"bad substitution in {self.text!r}: missing variable name")
        char = self.next()
        if char == "}":
            return self.env.get(name, "")
        colon = char == ":"
        if colon:
            char = self.next()
        if not char:
            raise self.fail(f"missing '}}' in {self.text!r}")
        if char not in ("-", "+", "?"):
            raise self.fail(f"unsupported modifier {char!r} in ${{{name}...}}")
        word = self.until("}")
        self.pos += 1
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if char == "-":
            return value if is_set and value is not None else word
        if char == "+":
            return word if is_set else ""
        if not is_set or value is None:
            raise self.fail(f"{name}: {word or 'is not allowed to be unset'}")
        return value
