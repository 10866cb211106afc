"""What a COPY/ADD source resolves to: matches and the files below them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from executor.context.ignore import Pattern


class FileKind(Enum):
    """The kinds of entry a build context can hand to COPY."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"


@dataclass(frozen=True)
class SourceMatch:
    """One context path a COPY/ADD source pattern matched.

    ``host_path`` is where the bytes are (a symlink named by the source itself is
    followed, inside the context root, as BuildKit does); ``rel_path`` is the path
    as matched, relative to the context root; ``dest`` is the subpath below the
    COPY destination where it lands (``""`` is the destination itself: a
    directory's contents are copied there, not the directory). ``excludes`` are the
    COPY's ``--exclude`` patterns, applied again when the match is walked.
    """

    host_path: Path
    rel_path: str
    is_dir: bool
    dest: str
    excludes: tuple[Pattern, ...] = ()


@dataclass(frozen=True)
class ContextFile:
    """One entry a COPY would copy: where it is, where it lands, and its lstat.

    ``host_path`` is a plain string: a directory of small files is walked faster
    than a Path per entry could be built.
    """

    host_path: str
    rel_path: str
    dest: str
    kind: FileKind
    stat: os.stat_result

    @property
    def mode(self) -> int:
        """Permission bits only (with setuid, setgid and sticky), as cache keys use."""
        return self.stat.st_mode & 0o7777
