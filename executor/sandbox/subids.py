"""The caller's subordinate ids, for the rootless (``userns``) sandbox.

A caller that is not root is mapped to root in a step's user namespace and, if
/etc/subuid and /etc/subgid give it a range, ids 1 and up are mapped onto that
range (newuidmap and newgidmap check the same files). The builder reads them
before it starts an entry process and hands the ranges over on its command line,
so a malformed file stops the step with where and what is wrong, in the words of
other input errors: ``/etc/subuid:3: start 'x' is not a number``.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from executor.errors import SandboxError

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")


@dataclass(frozen=True)
class IdRange:
    """``count`` ids from ``start`` on the host, mapped from id 1 inside."""

    start: int
    count: int


@dataclass(frozen=True)
class SubIds:
    uids: IdRange
    gids: IdRange


def _parse_line(line: str) -> tuple[str, IdRange] | None:
    """(owner, range) of one line; None for a blank or comment line. Raises ValueError."""
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    fields = line.split(":")
    if len(fields) != 3:
        raise ValueError(f"{line!r} is not owner:start:count")
    owner, start, count = fields
    if not owner:
        raise ValueError(f"{line!r} names no owner")
    for what, text in (("start", start), ("count", count)):
        if not text.isascii() or not text.isdigit():
            raise ValueError(f"{what} {text!r} is not a number")
    if int(count) == 0:
        raise ValueError("count is 0")
    return owner, IdRange(int(start), int(count))


def find_range(path: Path, *, uid: int, name: str | None) -> IdRange | None:
    """The first range ``path`` gives the user (by name or by uid); None if it gives
    none or cannot be read. Any malformed line raises SandboxError with its number:
    it may be the one meant for this user."""
    try:
        text = path.read_text(errors="surrogateescape")
    except OSError:
        return None  # as with no entry: only the caller's own id is mapped
    found: IdRange | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            entry = _parse_line(line)
        except ValueError as exc:
            raise SandboxError(f"{path}:{number}: {exc}") from None
        if entry is not None and found is None and entry[0] in (name, str(uid)):
            found = entry[1]
    return found


def caller_subids(*, subuid: Path = SUBUID, subgid: Path = SUBGID) -> SubIds | None:
    """The calling user's ranges; None for root (it maps every id) or without both."""
    uid = os.getuid()
    if uid == 0:
        return None
    try:
        name: str | None = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None  # a uid with no passwd entry (a container's random uid): by number
    uids = find_range(subuid, uid=uid, name=name)
    gids = find_range(subgid, uid=uid, name=name)
    return SubIds(uids, gids) if uids is not None and gids is not None else None
