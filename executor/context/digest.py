"""Content digests of context files, for COPY/ADD cache keys.

Only what lands in the image counts: the destination path, the kind, the
permission bits and the content (a symlink's target). Never mtime or owner, so a
fresh checkout of the same tree gives the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from executor.context.errors import ContextError
from executor.context.source import ContextFile, FileKind

_CHUNK = 1024 * 1024
# Bump when the encoding below changes, so old cache keys cannot collide with new.
DIGEST_VERSION = 1


def file_digest(path: str | Path) -> str:
    """Return ``sha256:<hex>`` of a regular file's content or a symlink's target."""
    try:
        info = os.lstat(path)
        hasher = hashlib.sha256()
        if stat.S_ISLNK(info.st_mode):
            hasher.update(os.fsencode(os.readlink(path)))
        elif stat.S_ISREG(info.st_mode):
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            with os.fdopen(os.open(path, flags), "rb") as stream:
                while chunk := stream.read(_CHUNK):
                    hasher.update(chunk)
        else:
            raise ContextError(f"digesting {path}: not a regular file or symlink")
    except OSError as exc:
        raise ContextError(f"digesting {path}: {exc}") from exc
    return "sha256:" + hasher.hexdigest()


def _content_digest(entry: ContextFile) -> str:
    if entry.kind is FileKind.DIR:
        return ""
    return file_digest(entry.host_path)


def digest_files(files: Iterable[ContextFile]) -> str:
    """Digest what a COPY copies: one JSON line per entry, in the order given.

    :func:`executor.context.build_context.context_digest` passes every walked
    entry of a COPY's matches; the order is part of the key because later
    sources overwrite earlier ones.
    """
    hasher = hashlib.sha256()
    hasher.update(f"context-digest-v{DIGEST_VERSION}\n".encode())
    for entry in files:
        record = [entry.dest, entry.kind.value, entry.mode, _content_digest(entry)]
        line = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
        hasher.update(line.encode("ascii") + b"\n")
    return "sha256:" + hasher.hexdigest()
