"""The build context COPY and ADD read from: a directory or an unpacked tarball.

Paths are always resolved inside the context root: symlinks met while resolving a
source are followed as if the root were ``/`` (an absolute target or a ``..``
never leaves it), and symlinks below a copied directory are copied as symlinks,
never followed.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from executor.context.archive import DEFAULT_LIMITS, UnpackLimits, unpack_tar
from executor.context.digest import digest_files
from executor.context.errors import ContextError
from executor.context.ignore import (
    IgnoreMatcher,
    Pattern,
    contains_wildcards,
    glob_regex,
    go_clean,
    parse_dockerignore,
    parse_patterns,
)
from executor.context.source import ContextFile, FileKind, SourceMatch

# Linux gives up after 40 symlinks in one lookup (ELOOP); so do we.
MAX_SYMLINKS = 40
DOCKERIGNORE = ".dockerignore"
_UNPACK_DIR = "context"


def _split(rel: str) -> list[str]:
    return [part for part in rel.split("/") if part not in ("", ".")]


class BuildContext:
    """A context directory with its ``.dockerignore`` applied."""

    def __init__(self, root: Path, *, dockerfile: str = "Dockerfile", ignore: bool = True) -> None:
        """Open ``root`` as a context, applying its ignore file unless ``ignore`` is false.

        ``ignore=False`` is for a stage's rootfs under ``COPY --from``, which Docker
        never filters.
        """
        self.root = root.resolve()
        self.dockerfile_path = self._dockerfile_path(dockerfile)
        self.ignore_file = self._ignore_file() if ignore else None
        patterns: tuple[Pattern, ...] = ()
        if self.ignore_file is not None:
            text = self.ignore_file.read_text(encoding="utf-8", errors="surrogateescape")
            patterns = parse_dockerignore(text)
        self.ignore = IgnoreMatcher(patterns)

    def _dockerfile_path(self, dockerfile: str) -> Path:
        if os.path.isabs(dockerfile):
            # An operator's --dockerfile outside the context (kaniko allows it).
            return Path(dockerfile)
        return self.root / self.resolve_path(dockerfile)

    def _ignore_file(self) -> Path | None:
        """``<Dockerfile>.dockerignore`` beside the Dockerfile wins over ``.dockerignore``."""
        beside = self.dockerfile_path.with_name(self.dockerfile_path.name + DOCKERIGNORE)
        for candidate in (beside, self.root / self.resolve_path(DOCKERIGNORE)):
            if candidate.is_file():
                return candidate
        return None

    def read_dockerfile(self) -> bytes:
        """Return the Dockerfile, which the builder may read even when it is ignored."""
        try:
            return self.dockerfile_path.read_bytes()
        except OSError as exc:
            raise ContextError(f"reading Dockerfile {self.dockerfile_path}: {exc}") from exc

    def resolve_path(self, rel: str, *, follow_last: bool = True) -> str:
        """Resolve ``rel`` inside the root, following symlinks as if root were ``/``.

        Returns the resolved path relative to the root (``""`` for the root);
        components after a missing one are kept as given.
        """
        pending = _split(rel)
        resolved: list[str] = []
        followed = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            host = self.root.joinpath(*resolved, part)
            try:
                info = os.lstat(host)
            except (FileNotFoundError, NotADirectoryError):
                resolved.append(part)
                resolved.extend(p for p in pending if p != "..")
                return "/".join(resolved)
            if stat.S_ISLNK(info.st_mode) and (pending or follow_last):
                followed += 1
                if followed > MAX_SYMLINKS:
                    raise ContextError(f"resolving {rel!r} in {self.root}: too many symlinks")
                target = os.readlink(host)
                if target.startswith("/"):
                    resolved = []
                pending[:0] = _split(target)
                continue
            resolved.append(part)
        return "/".join(resolved)

    def visible(self, rel: str) -> bool:
        """Whether COPY can see ``rel``: not ignored, or a directory holding an exception."""
        if not self.ignore.matches(rel):
            return True
        if not self.ignore.has_exceptions:
            return False
        host = self.root / rel
        if not host.is_dir() or host.is_symlink():
            return False
        return any(True for _ in self._entries(rel, excludes=IgnoreMatcher(())))

    def resolve(
        self, sources: Sequence[str], *, excludes: Sequence[str] = (), parents: bool = False
    ) -> list[SourceMatch]:
        """Resolve COPY/ADD sources to matches, in source order then path order.

        Like BuildKit (``AllowEmptyWildcard``), a wildcard matching nothing is not an
        error; a plain path that does not exist or is ignored is.
        """
        exclude_patterns = parse_patterns(excludes)
        exclude = IgnoreMatcher(exclude_patterns)
        matches: list[SourceMatch] = []
        for source in sources:
            base, pattern = "", source
            if parents and "/./" in source:
                # BuildKit's pivot: only what follows "/./" is kept under the destination.
                base, pattern = source.split("/./", 1)
                base = go_clean("/" + base).lstrip("/")
            pattern = go_clean("/" + pattern).lstrip("/")
            wildcard = contains_wildcards(pattern)
            named = self._glob(base, pattern) if wildcard else [pattern]
            found = [
                replace(match, excludes=exclude_patterns)
                for rel in named
                if (match := self._match(source, base, rel, parents, explicit=not wildcard))
            ]
            if not wildcard and not found:
                raise ContextError(
                    f"resolving COPY source {source!r} in {self.root}: "
                    "no source files were specified (not found in the build context)"
                )
            matches.extend(m for m in found if not _excluded(exclude, m.rel_path))
        return matches

    def _glob(self, base: str, pattern: str) -> list[str]:
        """Expand a wildcard pattern one component at a time, in sorted order."""
        current = [""]
        for part in _split(pattern):
            following: list[str] = []
            for prefix in current:
                if not contains_wildcards(part):
                    following.append(posixpath.join(prefix, part) if prefix else part)
                    continue
                regex = glob_regex(part)
                directory = self.root / self.resolve_path(posixpath.join(base, prefix))
                try:
                    names = sorted(os.listdir(directory))
                except (NotADirectoryError, FileNotFoundError):
                    continue
                following.extend(
                    posixpath.join(prefix, name) if prefix else name
                    for name in names
                    if regex.match(name)
                )
            current = following
        return current

    def _match(
        self, source: str, base: str, rel: str, parents: bool, *, explicit: bool
    ) -> SourceMatch | None:
        """Match one candidate path; ``None`` if COPY cannot see it."""
        named = posixpath.join(base, rel) if base else rel
        if named and not self.visible(named):
            return None
        real = self.resolve_path(named)
        if real and not self.visible(real):
            return None
        host = self.root / real if real else self.root
        try:
            info = os.stat(host)  # every link on the way was resolved, none is left
        except (FileNotFoundError, NotADirectoryError):
            return None
        is_dir = stat.S_ISDIR(info.st_mode)
        if not (is_dir or stat.S_ISREG(info.st_mode)):
            if not explicit:
                return None  # a wildcard skips sockets and FIFOs, as a directory walk does
            raise ContextError(
                f"resolving COPY source {source!r} in {self.root}: "
                f"{named} is not a regular file or directory"
            )
        dest = rel if parents else ("" if is_dir else posixpath.basename(named))
        return SourceMatch(host_path=host, rel_path=named, is_dir=is_dir, dest=dest)

    def walk(self, match: SourceMatch) -> Iterator[ContextFile]:
        """List what COPY copies for ``match``: itself, or every entry below it, sorted."""
        exclude = IgnoreMatcher(match.excludes)
        if not match.is_dir:
            yield ContextFile(
                host_path=str(match.host_path),
                rel_path=match.rel_path,
                dest=match.dest,
                kind=FileKind.FILE,
                stat=os.stat(match.host_path),
            )
            return
        real = os.path.relpath(match.host_path, self.root)
        real = "" if real == "." else real
        rel_prefix = f"{real}/" if real else ""
        dest_prefix = f"{match.dest}/" if match.dest else ""
        for sub, host_path, info in self._entries(real, excludes=exclude):
            yield ContextFile(
                host_path=host_path,
                rel_path=rel_prefix + sub,
                dest=dest_prefix + sub,
                kind=_KINDS[stat.S_IFMT(info.st_mode)],
                stat=info,
            )

    def _entries(
        self, directory: str, *, excludes: IgnoreMatcher, top: str | None = None
    ) -> Iterator[tuple[str, str, os.stat_result]]:
        """Yield (path below ``top``, host path, lstat) of visible entries, depth first, sorted.

        ``excludes`` match paths relative to ``top`` (the copied directory). An
        ignored directory is still walked when exceptions exist, and listed when
        something below it is kept (Docker sends the parents of kept files along).
        """
        top = directory if top is None else top
        cut = len(top) + 1 if top else 0
        filtered = bool(self.ignore.patterns or excludes.patterns)
        walk_hidden = self.ignore.has_exceptions or excludes.has_exceptions
        start = self.root / directory if directory else self.root
        with os.scandir(start) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            file_type = stat.S_IFMT(info.st_mode)
            if file_type not in _KINDS:
                continue  # sockets, FIFOs and devices are not copied
            rel = f"{directory}/{entry.name}" if directory else entry.name
            sub = rel[cut:]
            hidden = filtered and (self.ignore.matches(rel) or excludes.matches(sub))
            if not hidden:
                yield sub, entry.path, info
                if file_type == stat.S_IFDIR:
                    yield from self._entries(rel, excludes=excludes, top=top)
            elif walk_hidden and file_type == stat.S_IFDIR:
                below = list(self._entries(rel, excludes=excludes, top=top))
                if below:
                    yield sub, entry.path, info
                    yield from below


def context_digest(context: BuildContext, matches: Sequence[SourceMatch]) -> str:
    """Digest every file the COPY of ``matches`` would copy (see :mod:`.digest`)."""
    return digest_files(entry for match in matches for entry in context.walk(match))


def _excluded(exclude: IgnoreMatcher, rel: str) -> bool:
    """``--exclude`` on a match itself is tested against its name (see module notes)."""
    return exclude.matches(posixpath.basename(rel)) if rel else False


# The entry types COPY copies, by S_IFMT.
_KINDS = {stat.S_IFREG: FileKind.FILE, stat.S_IFDIR: FileKind.DIR, stat.S_IFLNK: FileKind.SYMLINK}


def open_context(
    spec: str | Path,
    *,
    dockerfile: str = "Dockerfile",
    workspace: Path,
    limits: UnpackLimits = DEFAULT_LIMITS,
) -> BuildContext:
    """Open a context: a directory, ``dir://DIR`` or ``tar://FILE`` (tar or tar.gz).

    A tarball is unpacked safely into ``workspace/context`` first.
    """
    text = str(spec)
    if text.startswith("tar://"):
        archive = Path(text.removeprefix("tar://"))
    elif text.startswith("dir://"):
        archive = None
        directory = Path(text.removeprefix("dir://"))
    elif "://" in text:
        raise ContextError(f"opening build context {text!r}: unsupported scheme")
    else:
        path = Path(text)
        archive = path if path.is_file() else None
        directory = path
    if archive is not None:
        if not archive.is_file():
            raise ContextError(f"opening build context {text!r}: {archive} is not a file")
        directory = workspace / _UNPACK_DIR
        unpack_tar(archive, directory, limits=limits)
    if not directory.is_dir():
        raise ContextError(f"opening build context {text!r}: {directory} is not a directory")
    return BuildContext(directory, dockerfile=dockerfile)
