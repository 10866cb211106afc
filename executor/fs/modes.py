"""``--chmod`` values: octal (``0755``) or symbolic (``u+x,go-w``), as chmod(1) reads them."""

from __future__ import annotations

import re
import stat

_CLAUSE = re.compile(r"^([ugoa]*)([-+=])([rwxXst]*)$")
_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o1007}
_PERM = {"r": 0o444, "w": 0o222, "x": 0o111, "s": 0o6000, "t": 0o1000}


class ModeError(ValueError):
    """A --chmod value that is neither octal nor symbolic."""


def parse_mode(text: str) -> tuple[int | None, str]:
    """Validate ``text``: (octal mode, "") or (None, symbolic text)."""
    if re.fullmatch(r"[0-7]{1,4}", text):
        return int(text, 8), ""
    for clause in text.split(","):
        if not _CLAUSE.match(clause):
            raise ModeError(f"invalid --chmod {text!r}: want octal (0755) or symbolic (u+x,go-w)")
    return None, text


def apply_mode(text: str, current: int) -> int:
    """The permission bits after applying ``text`` to ``current`` (type bits ignored)."""
    octal, symbolic = parse_mode(text)
    if octal is not None:
        return octal
    mode = stat.S_IMODE(current)
    is_dir = stat.S_ISDIR(current)
    for clause in symbolic.split(","):
        m = _CLAUSE.match(clause)
        assert m is not None  # parse_mode checked every clause
        who_text, op, perms = m.groups()
        who = 0
        for w in who_text or "a":
            who |= 0o7777 if w == "a" else _WHO[w]
        bits = 0
        for p in perms:
            if p == "X":
                # Execute only for directories, or if someone may execute already.
                if is_dir or mode & 0o111:
                    bits |= 0o111
            else:
                bits |= _PERM[p]
        bits &= who
        if op == "+":
            mode |= bits
        elif op == "-":
            mode &= ~bits
        else:
            mode = (mode & ~(who & 0o777)) | bits
    return mode
